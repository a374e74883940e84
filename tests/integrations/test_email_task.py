"""The send_email task against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from tests.conftest import free_port
from tests.integrations import run_inline
from wfray.domain.errors import NonRetryableError, RetryLater
from wfray.integrations.email import (
    Attachment,
    EmailReceipt,
    OutgoingEmail,
    SmtpOverrides,
    SmtpSettings,
    derived_message_id,
    send_email,
    send_message,
)
from wfray.sdk.definition import registered

PDF_BYTES = b"%PDF-1.4\n% a tiny stand-in\n%%EOF\n"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class RecordingHandler:
    """Keeps every message; answers DATA or RCPT with a chosen reply when told to."""

    received: list[Received] = field(default_factory=list)
    data_reply: str | None = None
    refused: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refused:
            return self.refused[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def _check_login(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login,
        auth_data.password,
    ) == (b"billing", b"s3cret")
    # handled=False: aiosmtpd then sends the 535 reply itself
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    handler: RecordingHandler
    settings: SmtpSettings


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    handler = RecordingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_check_login,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(handler, SmtpSettings(host="127.0.0.1", port=port, timeout_s=5))
    finally:
        controller.stop()


def _invoice_mail(**changes: Any) -> OutgoingEmail:
    values: dict[str, Any] = {
        "sender": "Billing <billing@shop.example>",
        "to": ["Anna Berg <anna@example.org>"],
        "cc": ["books@shop.example"],
        "bcc": ["archive@shop.example"],
        "subject": "Rechnung RE-2025-000123: Grüße",
        "text": "Guten Tag,\nanbei Ihre Rechnung.\n",
        "html": "<p>Guten Tag, anbei Ihre Rechnung.</p>",
        "attachments": [
            Attachment.from_bytes("RE-2025-000123.pdf", PDF_BYTES, "application/pdf"),
            Attachment.from_bytes("notes.txt", b"plain notes", "text/plain"),
        ],
        "message_id": "RE-2025-000123.inv@billing.example",
        "headers": {"X-Invoice-No": "RE-2025-000123"},
    }
    values.update(changes)
    return OutgoingEmail.model_validate(values)


def test_message_arrives_with_recipients_headers_and_attachments(smtp_server: SmtpServer) -> None:
    receipt = send_message(smtp_server.settings, _invoice_mail())

    assert receipt.message_id == "<RE-2025-000123.inv@billing.example>"
    assert receipt.refused == {}
    (got,) = smtp_server.handler.received
    assert got.mail_from == "billing@shop.example"
    assert sorted(got.rcpt_tos) == [
        "anna@example.org",
        "archive@shop.example",
        "books@shop.example",
    ]
    assert sorted(receipt.accepted) == sorted(got.rcpt_tos)
    msg = got.message
    assert msg["Subject"] == "Rechnung RE-2025-000123: Grüße"
    assert msg["Message-ID"] == "<RE-2025-000123.inv@billing.example>"
    assert msg["X-Invoice-No"] == "RE-2025-000123"
    assert msg["Cc"] == "books@shop.example"
    assert msg["Bcc"] is None  # blind copies must not show in the delivered message
    assert msg["Date"] is not None
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "anbei Ihre Rechnung" in body.get_content()
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "<p>" in html.get_content()
    attachments = {part.get_filename(): part for part in msg.iter_attachments()}
    pdf = attachments["RE-2025-000123.pdf"]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content() == PDF_BYTES and pdf.get_content().startswith(b"%PDF-")
    assert attachments["notes.txt"].get_content_type() == "text/plain"


def test_task_reads_the_server_from_the_environment_and_logs_in(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFRAY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("WFRAY_SMTP_PORT", str(smtp_server.settings.port))
    monkeypatch.setenv("WFRAY_SMTP_USERNAME", "billing")
    monkeypatch.setenv("WFRAY_SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("WFRAY_SMTP_TIMEOUT_S", "5")

    receipt = send_email(_invoice_mail(attachments=[]))

    assert receipt.message_id == "<RE-2025-000123.inv@billing.example>"
    assert len(smtp_server.handler.received) == 1


def test_wrong_password_is_permanent(smtp_server: SmtpServer) -> None:
    overrides = SmtpOverrides(
        host="127.0.0.1", port=smtp_server.settings.port, username="billing", password="nope"
    )
    with pytest.raises(NonRetryableError, match="535"):
        send_email(_invoice_mail(), smtp=overrides)
    assert smtp_server.handler.received == []


def test_explicit_input_wins_over_the_environment(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WFRAY_SMTP_HOST", "smtp.nowhere.invalid")
    monkeypatch.setenv("WFRAY_SMTP_PORT", "1")
    overrides = SmtpOverrides(host="127.0.0.1", port=smtp_server.settings.port)
    send_email(_invoice_mail(), smtp=overrides)
    assert len(smtp_server.handler.received) == 1


def test_bad_environment_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFRAY_SMTP_PORT", "twenty-five")
    with pytest.raises(NonRetryableError, match="port"):
        SmtpSettings.from_env()


def test_transient_451_asks_for_a_retry(smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_reply = "451 4.3.0 Try again later"
    with pytest.raises(RetryLater) as caught:
        send_message(smtp_server.settings, _invoice_mail())
    assert caught.value.delay_s > 0
    assert "451" in str(caught.value) and "RE-2025-000123" in str(caught.value)


def test_permanent_550_is_not_retried(smtp_server: SmtpServer) -> None:
    smtp_server.handler.data_reply = "550 5.7.1 Message rejected"
    with pytest.raises(NonRetryableError, match="550"):
        send_message(smtp_server.settings, _invoice_mail())


def test_all_recipients_refused_550_is_permanent(smtp_server: SmtpServer) -> None:
    smtp_server.handler.refused = {"anna@example.org": "550 5.1.1 No such user"}
    with pytest.raises(NonRetryableError, match="550"):
        send_message(smtp_server.settings, _invoice_mail(cc=[], bcc=[]))


def test_all_recipients_greylisted_asks_for_a_retry(smtp_server: SmtpServer) -> None:
    smtp_server.handler.refused = {"anna@example.org": "450 4.2.0 Greylisted"}
    with pytest.raises(RetryLater, match="450"):
        send_message(smtp_server.settings, _invoice_mail(cc=[], bcc=[]))


def test_partly_refused_message_reports_who_did_not_get_it(smtp_server: SmtpServer) -> None:
    smtp_server.handler.refused = {"books@shop.example": "550 5.1.1 No such user"}
    receipt = send_message(smtp_server.settings, _invoice_mail())
    assert receipt.refused == {"books@shop.example": "550 5.1.1 No such user"}
    assert "books@shop.example" not in receipt.accepted
    (got,) = smtp_server.handler.received
    assert "books@shop.example" not in got.rcpt_tos


def test_no_server_listening_asks_for_a_retry() -> None:
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout_s=2)
    with pytest.raises(RetryLater, match="ConnectionRefusedError"):
        send_message(settings, _invoice_mail())


def test_message_id_is_derived_from_the_idempotency_key_when_not_given(
    smtp_server: SmtpServer,
) -> None:
    fallback = derived_message_id("run-1/send/-1")
    assert fallback == derived_message_id("run-1/send/-1") != derived_message_id("run-2/send/-1")
    receipt = send_message(smtp_server.settings, _invoice_mail(message_id=None), fallback)
    assert receipt.message_id == fallback
    assert smtp_server.handler.received[0].message["Message-ID"] == fallback
    with pytest.raises(NonRetryableError, match="message_id"):
        send_message(smtp_server.settings, _invoice_mail(message_id=None))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"to": []}, "to"),
        ({"to": ["not-an-address"]}, "e-mail address"),
        ({"message_id": "no at sign"}, "Message-ID"),
        ({"headers": {"Subject": "sneaky"}}, "set from the message fields"),
        ({"headers": {"X-Bad": "a\nb"}}, "single-line"),
        ({"attachments": [{"filename": "a.pdf", "content_base64": "***"}]}, "base64"),
        (
            {"attachments": [{"filename": "a", "content_type": "pdf", "content_base64": ""}]},
            "MIME type",
        ),
    ],
)
def test_bad_messages_are_refused_at_validation(changes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        _invoice_mail(**changes)


def test_task_is_declared_on_the_io_pool() -> None:
    flow = registered("send_email")
    assert flow is not None
    (step,) = flow.schema.steps
    assert step.pool == "io"
    assert flow.input_model is not None
    assert set(flow.input_model.model_fields) == {"message", "smtp"}


def test_through_the_coordinator_json_input_is_sent_with_a_derived_message_id(
    smtp_server: SmtpServer,
) -> None:
    message = _invoice_mail(message_id=None).model_dump(mode="json")
    smtp = {"host": "127.0.0.1", "port": smtp_server.settings.port, "timeout_s": 5}
    view, _ = run_inline(send_email, {"message": message, "smtp": smtp})
    assert view.status.name == "COMPLETED", view.error
    receipt = EmailReceipt.model_validate_json(view.result_json or "")
    (got,) = smtp_server.handler.received
    assert got.message["Message-ID"] == receipt.message_id
    assert receipt.message_id.endswith("@wfray.invalid>")
    (pdf,) = [
        p for p in got.message.iter_attachments() if p.get_content_type() == "application/pdf"
    ]
    assert pdf.get_content() == PDF_BYTES


def test_through_the_coordinator_a_permanent_refusal_fails_at_once(
    smtp_server: SmtpServer,
) -> None:
    smtp_server.handler.data_reply = "554 5.7.1 Spam"
    payload = {
        "message": _invoice_mail().model_dump(mode="json"),
        "smtp": {"host": "127.0.0.1", "port": smtp_server.settings.port},
    }
    view, attempts = run_inline(send_email, payload)
    assert view.status.name == "FAILED"
    assert len(attempts) == 1 and "554" in (view.error or "")
