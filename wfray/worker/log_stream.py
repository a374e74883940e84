"""Log lines of long-running attempts reach the store while they run.

One daemon thread per process takes, every few seconds, the lines each running attempt
logged so far and hands them to the coordinator; the rest travel with the attempt's outcome.
A failed delivery puts the lines back, so they go with the next delivery or the outcome.
"""

from __future__ import annotations

import logging
import threading

from wfray.application.ports import StepServices
from wfray.sdk.context import AttemptLog

log = logging.getLogger("wfray.logs")


class LogStreamer:
    def __init__(self, services: StepServices, interval_s: float) -> None:
        self.services = services
        self.interval_s = interval_s
        self._active: dict[int, AttemptLog] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def track(self, attempt_log: AttemptLog) -> None:
        with self._lock:
            self._active[id(attempt_log)] = attempt_log
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wfray-log-stream", daemon=True
                )
                self._thread.start()

    def untrack(self, attempt_log: AttemptLog) -> None:
        with self._lock:
            self._active.pop(id(attempt_log), None)
        with attempt_log.delivery:
            pass  # a delivery in flight ends before the outcome leaves

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.interval_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            logs = list(self._active.values())
        for attempt_log in logs:
            with attempt_log.delivery:
                self._deliver(attempt_log)

    def _deliver(self, attempt_log: AttemptLog) -> None:
        lines = attempt_log.take()
        if not lines:
            return
        try:
            delivered = self.services.logs(lines)
        except Exception as exc:  # never let streaming break the step
            log.warning("streaming %d log lines failed: %s", len(lines), exc)
            delivered = False
        if not delivered:
            attempt_log.put_back(lines)


_streamers: dict[tuple[int, float], LogStreamer] = {}
_streamers_lock = threading.Lock()


def streamer_for(services: StepServices, interval_s: float) -> LogStreamer:
    with _streamers_lock:
        key = (id(services), interval_s)
        found = _streamers.get(key)
        if found is None:
            found = _streamers[key] = LogStreamer(services, interval_s)
        return found
