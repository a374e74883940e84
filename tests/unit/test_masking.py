"""The masking of credentials in text people read (wfray.domain.masking)."""

from __future__ import annotations

import pytest

from wfray.domain.masking import mask_headers, mask_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ("proxy-authorization: Basic dXNlcjpwYXNz", "proxy-authorization: ***"),
        ("Set-Cookie: sid=2; Path=/\nnext line", "Set-Cookie: ***\nnext line"),
        ("{'Cookie': 'sid=1', 'X': 'y'}", "{'Cookie': '***', 'X': 'y'}"),
        ('{"authorization": "Bearer x", "n": 1}', '{"authorization": "***", "n": 1}'),
        ("sent with bearer eyJhbGciOi.x-y_z", "sent with bearer ***"),
        ("postgresql://wf:pw%40x@db:5432/wfray", "postgresql://wf:***@db:5432/wfray"),
        ("GET https://api.example/orders?page=2", "GET https://api.example/orders?page=2"),
        ("the cookie jar is empty", "the cookie jar is empty"),
    ],
)
def test_credentials_are_masked(text: str, expected: str) -> None:
    assert mask_text(text) == expected


def test_resolved_secrets_are_masked_longest_first_and_short_ones_left() -> None:
    text = "key sk-live-123 and sk-live-1234, pin 42"
    assert mask_text(text, ["sk-live-123", "sk-live-1234", "42"]) == "key *** and ***, pin 42"


def test_headers_keep_their_names_and_lose_sensitive_values() -> None:
    given = {"Authorization": "Bearer a", "Accept": "application/json", "set-cookie": "s=1"}
    assert mask_headers(given) == {
        "Authorization": "***",
        "Accept": "application/json",
        "set-cookie": "***",
    }
    assert given["Authorization"] == "Bearer a"  # a copy: the original is never altered
