"""The client: wfray's calls over a transport to a coordinator (client.py), the run handle
and how a run's outcome becomes a value (handle.py), and how submissions are built."""
