"""Item 2 of issue 13, `send_email`: the operator's SMTP server and credentials stay the
operator's, and the worker's settings bound who may send to whom.

Until then an input overriding `host` alone sent the username and password of the workers'
environment to the caller's server. Two real SMTP servers on loopback: the operator's,
which wants a login, and the attacker's, which records every login it is offered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from pydantic import ValidationError

from tests.conftest import free_port
from tests.integrations import run_inline
from wfray.domain.errors import EmailRefusedError, NonRetryableError
from wfray.domain.status import RunStatus
from wfray.integrations.email import (
    OutgoingEmail,
    SmtpOverrides,
    SmtpPolicy,
    send_email,
)

USERNAME, PASSWORD = "billing", "operator-smtp-s3cret"


@dataclass
class Mailbox:
    """An SMTP server's record: the logins offered and the envelopes accepted."""

    port: int = 0
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        return AuthResult(success=True, handled=False)


def _serve(box: Mailbox) -> Controller:
    box.port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    return controller


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    """The operator's server, configured in the worker's environment with credentials."""
    box = Mailbox()
    controller = _serve(box)
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": str(box.port),
        "USERNAME": USERNAME,
        "PASSWORD": PASSWORD,
        "TIMEOUT_S": "5",
    }.items():
        monkeypatch.setenv(f"WFRAY_SMTP_{name}", value)
    for name in ("ALLOWED_SENDERS", "ALLOWED_RECIPIENTS", "MAX_RECIPIENTS"):
        monkeypatch.delenv(f"WFRAY_SMTP_{name}", raising=False)
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def attacker() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = _serve(box)
    try:
        yield box
    finally:
        controller.stop()


def _mail(**changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "sender": "Billing <billing@shop.example>",
        "to": ["anna@example.org"],
        "cc": ["books@shop.example"],
        "subject": "Rechnung",
        "text": "anbei",
        "message_id": "<RE-1@billing.example>",
    }
    values.update(changes)
    return OutgoingEmail.model_validate(values)


def test_overriding_the_host_sends_the_operators_password_nowhere(
    operator: Mailbox, attacker: Mailbox
) -> None:
    steal = SmtpOverrides(host="127.0.0.1", port=attacker.port)
    with pytest.raises(EmailRefusedError, match="SMTP host, port refused") as refused:
        send_email(_mail(), steal)
    assert "credentials come from the workers' environment" in str(refused.value)
    assert attacker.logins == [] and attacker.envelopes == []
    assert operator.envelopes == []


@pytest.mark.parametrize(
    "override",
    [
        {"port": 2525},
        {"ssl": True},
        {"starttls": False},
        {"username": "mallory"},
        {"password": "guess"},
        {"password": {"secret": "OTHER_TEAMS_KEY"}},
    ],
)
def test_no_server_tls_or_credential_field_can_be_overridden(
    operator: Mailbox, override: dict[str, Any]
) -> None:
    (name,) = override
    with pytest.raises(EmailRefusedError, match=f"SMTP {name} refused"):
        send_email(_mail(), SmtpOverrides.model_validate(override))
    assert operator.envelopes == [] and operator.logins == []


def test_the_timeout_may_still_be_given(operator: Mailbox) -> None:
    receipt = send_email(_mail(), SmtpOverrides(timeout_s=3))
    assert receipt.refused == {}
    assert operator.logins == [(USERNAME.encode(), PASSWORD.encode())]
    assert operator.envelopes == [
        ("billing@shop.example", ["anna@example.org", "books@shop.example"])
    ]


def test_through_the_engine_the_run_fails_for_good_without_the_password(
    operator: Mailbox, attacker: Mailbox
) -> None:
    payload = {
        "message": _mail().model_dump(),
        "smtp": {"host": "127.0.0.1", "port": attacker.port},
    }
    view, attempts = run_inline(send_email, payload)
    assert view.status is RunStatus.FAILED
    (attempt,) = attempts
    assert attempt.error_type == "wfray.domain.errors.EmailRefusedError"
    assert PASSWORD not in (attempt.error_message or "") + (attempt.traceback or "")
    assert attacker.logins == []


def test_senders_outside_the_allowlist_are_refused(
    operator: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFRAY_SMTP_ALLOWED_SENDERS", "shop.example, ceo@corp.example")
    with pytest.raises(
        EmailRefusedError, match=re.escape("sender 'ceo@shop.example.evil' refused")
    ):
        send_email(_mail(sender="ceo@shop.example.evil"))
    with pytest.raises(EmailRefusedError, match="WFRAY_SMTP_ALLOWED_SENDERS"):
        send_email(_mail(sender="cfo@corp.example"))
    assert operator.envelopes == []
    send_email(_mail(sender="CEO <ceo@corp.example>"))
    send_email(_mail())
    assert [mail_from for mail_from, _ in operator.envelopes] == [
        "ceo@corp.example",
        "billing@shop.example",
    ]


def test_recipients_outside_the_allowlist_are_refused_even_in_bcc(
    operator: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFRAY_SMTP_ALLOWED_RECIPIENTS", "example.org,books@shop.example")
    with pytest.raises(EmailRefusedError, match=re.escape("recipient 'leak@evil.example' refused")):
        send_email(_mail(bcc=["leak@evil.example"]))
    with pytest.raises(EmailRefusedError, match=re.escape("'boss@shop.example' refused")):
        send_email(_mail(cc=["boss@shop.example"]))
    assert operator.envelopes == []
    send_email(_mail())
    assert len(operator.envelopes) == 1


def test_the_recipient_cap_counts_to_cc_and_bcc(
    operator: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    many = [f"r{n}@example.org" for n in range(51)]
    with pytest.raises(EmailRefusedError, match="51 recipients refused: at most 50"):
        send_email(_mail(to=many[:2], cc=many[2:40], bcc=many[40:]))
    monkeypatch.setenv("WFRAY_SMTP_MAX_RECIPIENTS", "2")
    with pytest.raises(EmailRefusedError, match="WFRAY_SMTP_MAX_RECIPIENTS"):
        send_email(_mail(bcc=["x@example.org"]))
    assert operator.envelopes == []
    monkeypatch.setenv("WFRAY_SMTP_MAX_RECIPIENTS", "many")
    with pytest.raises(NonRetryableError, match="must be a positive integer"):
        SmtpPolicy.from_env()


@pytest.mark.parametrize("header", ["Resent-To", "Resent-Cc", "Resent-Bcc", "Sender"])
def test_headers_that_steer_the_envelope_are_refused(header: str) -> None:
    extra = {"Resent-Date": "Mon, 1 Dec 2025 10:00:00 +0000", header: "leak@evil.example"}
    with pytest.raises(ValidationError, match="is set from the message fields"):
        _mail(headers=extra)
