"""Attacks on the running system through its real surfaces (issue 13)."""
