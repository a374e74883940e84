"""Masking of credentials in text that people read: log lines, error messages, tracebacks.

    mask_text("GET https://bob:hunter2@host/ Authorization: Bearer abc")
    -> "GET https://bob:***@host/ Authorization: ***"

Masked: the values of Authorization, Proxy-Authorization, Cookie and Set-Cookie headers
(as header lines, or as keys of a dict or JSON object), bearer and basic credentials,
passwords in URLs, and any of the `secrets` given (values resolved from secret references).
Pure functions of their arguments: callers mask what they show or store for reading, never
the inputs and results that steps read back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import AfterValidator

MASK = "***"
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# Shorter values would mask ordinary words; secrets are longer than this.
MIN_SECRET_LENGTH = 4

_NAMES = r"(?:proxy-authorization|authorization|set-cookie|cookie)"
# 'Authorization': 'Bearer abc'  /  "cookie": "a=b"
_QUOTED = re.compile(rf"""(?i)(["']){_NAMES}\1\s*[:=]\s*(["'])((?:\\.|(?!\2).)*)\2""")
# Authorization: Bearer abc  (a header line, or inline up to the end of the line)
_LINE = re.compile(rf"""(?i)(?<![\w-])({_NAMES}\s*[:=]\s*)(?!["'\s])([^\r\n]+)""")
_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]*):([^@/\s]+)@")


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with credentials and the given secret values replaced by ***."""
    for value in sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _QUOTED.sub(_quoted, text)
    text = _LINE.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def _quoted(match: re.Match[str]) -> str:
    whole = match.group(0)
    start, end = match.span(3)
    offset = match.start(0)
    return whole[: start - offset] + MASK + whole[end - offset :]


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` with the sensitive ones' values replaced by ***."""
    return {k: MASK if k.lower() in SENSITIVE_HEADERS else v for k, v in headers.items()}


def mask_optional(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    return None if text is None else mask_text(text, secrets)


# Fields of read models (API answers) that show such text: masked as they are built.
MaskedText = Annotated[str, AfterValidator(mask_text)]
MaskedOptionalText = Annotated[str | None, AfterValidator(mask_optional)]
