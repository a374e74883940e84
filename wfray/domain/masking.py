"""Masking of credentials in text that people read: log lines, error messages, tracebacks.

    mask_text("GET https://bob:hunter2@host/ Authorization: Bearer abc")
    -> "GET https://bob:***@host/ Authorization: ***"

Masked: the values of Authorization, Proxy-Authorization, Cookie and Set-Cookie headers
(as header lines, or as keys of a dict or JSON object), bearer and basic credentials,
passwords in URLs, and any of the `secrets` given (values resolved from secret references);
in decoded JSON (`mask_data`) also the values of keys named like a password.
Pure functions of their arguments: callers mask what they show or store for reading, never
the inputs and results that steps read back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

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


# Keys of a JSON object (or dict) whose values are credentials, whatever they hold.
_SENSITIVE_KEY = re.compile(
    r"(?i)^(?:proxy-authorization|authorization|set-cookie|cookie|.*(?:password|passwd).*)$"
)


def mask_data(value: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of decoded JSON (dicts, lists, strings...) for reading: values under credential
    keys (Authorization, Cookie, Set-Cookie, anything named password) and credentials inside
    strings replaced by ***. A secret reference (`{"secret": "NAME"}`) is a name: shown."""
    found = tuple(secrets)
    if isinstance(value, str):
        return _mask_string(value, found)
    if isinstance(value, Mapping):
        if set(value) == {"secret"}:
            return dict(value)
        return {
            k: MASK
            if isinstance(k, str) and _SENSITIVE_KEY.match(k) and not _is_reference(v)
            else mask_data(v, found)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_data(v, found) for v in value]
    return value


def _mask_string(text: str, secrets: tuple[str, ...]) -> str:
    """A string holding a JSON object or list (a stored input, say) is masked as JSON."""
    if text[:1] in ("{", "["):
        try:
            decoded = json.loads(text)
        except ValueError:
            return mask_text(text, secrets)
        masked = mask_data(decoded, secrets)
        # unchanged JSON keeps its own spelling
        return text if masked == decoded else json.dumps(masked, ensure_ascii=False)
    return mask_text(text, secrets)


def _is_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and set(value) == {"secret"}


def mask_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` with the sensitive ones' values replaced by ***."""
    return {k: MASK if k.lower() in SENSITIVE_HEADERS else v for k, v in headers.items()}


def mask_optional(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    return None if text is None else mask_text(text, secrets)


# Fields of read models (API answers) that show such text: masked as they are built.
MaskedText = Annotated[str, AfterValidator(mask_text)]
MaskedOptionalText = Annotated[str | None, AfterValidator(mask_optional)]
MaskedData = Annotated[Any, AfterValidator(mask_data)]
