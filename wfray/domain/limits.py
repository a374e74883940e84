"""How long the names and keys a submission brings may be, and what they may hold.

Run ids, queue names, idempotency and concurrency keys, trigger ids are indexed columns: a
PostgreSQL index row past about 2,700 bytes is refused, and a refused row must never reach a
commit. They are checked when a run is submitted, with a clear error.
"""

from __future__ import annotations

import re

MAX_KEY_CHARS = 200  # characters; 4 bytes each at most in UTF-8: well inside an index row
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def key_problem(field: str, value: str | None) -> str | None:
    """Why `value` of `field` is refused (None: it is fine)."""
    if value is None:
        return None
    if len(value) > MAX_KEY_CHARS:
        return f"{field} is {len(value)} characters long; at most {MAX_KEY_CHARS} are allowed"
    if _UNSTORABLE.search(value):
        return f"{field} holds a NUL character or a lone surrogate, which cannot be stored"
    return None
