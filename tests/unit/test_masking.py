"""The masking of credentials in text people read (wfray.domain.masking)."""

from __future__ import annotations

import json

import pytest

from wfray.domain.masking import mask_data, mask_headers, mask_text


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


def test_decoded_json_loses_passwords_and_credentials_but_keeps_secret_names() -> None:
    given = {
        "smtp": {"host": "mail", "password": "hunter2", "user_password_hint": "pets"},
        "headers": {"Authorization": "Bearer abc", "Accept": "text/plain"},
        "api_key": {"secret": "NINOX_API_KEY"},
        "password": {"secret": "SMTP_PASSWORD"},
        "links": ["https://bob:pw@host/x", "https://host/y"],
        "count": 3,
    }
    assert mask_data(given) == {
        "smtp": {"host": "mail", "password": "***", "user_password_hint": "***"},
        "headers": {"Authorization": "***", "Accept": "text/plain"},
        "api_key": {"secret": "NINOX_API_KEY"},
        "password": {"secret": "SMTP_PASSWORD"},
        "links": ["https://bob:***@host/x", "https://host/y"],
        "count": 3,
    }
    assert given["smtp"]["password"] == "hunter2"  # a copy: the original is never altered


def test_a_string_holding_json_is_masked_as_json_and_left_alone_when_clean() -> None:
    stored = '{"to":"a@b.c","smtp":{"password":"hunter2"}}'
    assert json.loads(mask_data(stored)) == {"to": "a@b.c", "smtp": {"password": "***"}}
    clean = '{"to":"a@b.c","n":[1,2]}'
    assert mask_data(clean) is clean
    assert mask_data("{not json: Authorization: Bearer x") == "{not json: Authorization: ***"


def test_the_cli_prints_json_with_credentials_masked(capsys: pytest.CaptureFixture[str]) -> None:
    from wfray.entrypoints.cli_support import print_json

    print_json({"input_json": '{"password":"hunter2"}', "message": "Cookie: sid=1"})
    assert json.loads(capsys.readouterr().out) == {
        "input_json": '{"password": "***"}',
        "message": "Cookie: ***",
    }
