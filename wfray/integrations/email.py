"""The built-in `send_email` task: one message over SMTP (stdlib smtplib), attachments included.

    client.submit("send_email", {"message": {"sender": "billing@shop.example",
                                             "to": ["anna@example.org"], "subject": "Hello",
                                             "text": "..."}})

The server comes from the environment read on the worker (WFRAY_SMTP_HOST, _PORT, _USERNAME,
_PASSWORD, _STARTTLS, _SSL, _TIMEOUT_S), field by field overridden by the task input
(`smtp`), but never the server, port, TLS or credentials when the credentials come from the
workers' environment: those are the operator's, and an input naming another host would send
them there. A password in the input may be a secret by name (`{"secret": "SMTP_PASSWORD"}`).
The worker's environment also limits what is sent: WFRAY_SMTP_ALLOWED_SENDERS and
WFRAY_SMTP_ALLOWED_RECIPIENTS (comma-separated addresses or domains; default any) and
WFRAY_SMTP_MAX_RECIPIENTS (To, Cc and Bcc together; default 50). SMTP is at-least-once: a retried
send may deliver twice, so every message carries a deterministic Message-ID (given by the
caller, else derived from the run's idempotency key) that lets receivers spot duplicates.
"""

from __future__ import annotations

import os
import smtplib
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import parseaddr

from pydantic import BaseModel, ConfigDict, Field

# its home before every error moved to domain/errors.py; users import it from here
from wfray.domain.errors import EmailRefusedError as EmailRefusedError
from wfray.domain.errors import NonRetryableError, RetryLater, StepError
from wfray.integrations.email_message import (
    MESSAGE_ID_DOMAIN,
    Attachment,
    OutgoingEmail,
    build_message,
    derived_message_id,
    normal_message_id,
)
from wfray.integrations.smtp_server import SmtpOverrides, SmtpSettings
from wfray.sdk.context import StepContext
from wfray.sdk.secrets import reveal
from wfray.sdk.tasks import task

__all__ = [
    "CONNECTION_RETRY_DELAY_S",
    "DEFAULT_MAX_RECIPIENTS",
    "MESSAGE_ID_DOMAIN",
    "TRANSIENT_REPLY_DELAY_S",
    "Attachment",
    "EmailReceipt",
    "EmailRefusedError",
    "OutgoingEmail",
    "SmtpOverrides",
    "SmtpPolicy",
    "SmtpSettings",
    "build_message",
    "derived_message_id",
    "normal_message_id",
    "send_email",
    "send_message",
    "smtp_settings",
]

# 4xx replies are often greylisting, which typically clears after a few minutes.
TRANSIENT_REPLY_DELAY_S = 120.0
CONNECTION_RETRY_DELAY_S = 15.0
DEFAULT_MAX_RECIPIENTS = 50
# Overriding these would send the operator's credentials elsewhere, or without TLS.
_LOCKED_FIELDS = ("host", "port", "username", "password", "starttls", "ssl")


class SmtpPolicy(BaseModel):
    """What `send_email` may send, from the worker's environment (`from_env`).

    Attributes:
        allowed_senders: addresses or domains the From: address must match (empty: any).
        allowed_recipients: addresses or domains every recipient must match (empty: any).
        max_recipients: at most this many recipients (To, Cc and Bcc together).
    """

    model_config = ConfigDict(frozen=True)

    allowed_senders: tuple[str, ...] = ()
    allowed_recipients: tuple[str, ...] = ()
    max_recipients: int = Field(default=DEFAULT_MAX_RECIPIENTS, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpPolicy:
        """WFRAY_SMTP_ALLOWED_SENDERS, _ALLOWED_RECIPIENTS (comma-separated), _MAX_RECIPIENTS."""
        env = os.environ if env is None else env

        def entries(name: str) -> tuple[str, ...]:
            raw = env.get(name, "")
            return tuple(e.strip().lower() for e in raw.split(",") if e.strip())

        raw_cap = env.get("WFRAY_SMTP_MAX_RECIPIENTS", "").strip()
        try:
            return cls(
                allowed_senders=entries("WFRAY_SMTP_ALLOWED_SENDERS"),
                allowed_recipients=entries("WFRAY_SMTP_ALLOWED_RECIPIENTS"),
                max_recipients=int(raw_cap) if raw_cap else DEFAULT_MAX_RECIPIENTS,
            )
        except ValueError as exc:
            raise NonRetryableError(
                f"WFRAY_SMTP_MAX_RECIPIENTS must be a positive integer, got {raw_cap!r}"
            ) from exc

    def check(self, message: OutgoingEmail) -> None:
        """Raises EmailRefusedError naming the first address or count not allowed."""
        recipients = message.recipients()
        if len(recipients) > self.max_recipients:
            raise EmailRefusedError(
                f"message to {len(recipients)} recipients refused: at most "
                f"{self.max_recipients} (WFRAY_SMTP_MAX_RECIPIENTS)"
            )
        sender = parseaddr(message.sender)[1]
        if not _allowed(sender, self.allowed_senders):
            raise EmailRefusedError(
                f"sender {sender!r} refused: not in WFRAY_SMTP_ALLOWED_SENDERS "
                f"({', '.join(self.allowed_senders)})"
            )
        for address in recipients:
            if not _allowed(address, self.allowed_recipients):
                raise EmailRefusedError(
                    f"recipient {address!r} refused: not in WFRAY_SMTP_ALLOWED_RECIPIENTS "
                    f"({', '.join(self.allowed_recipients)})"
                )


def _allowed(address: str, entries: tuple[str, ...]) -> bool:
    """An empty list allows all; an entry with '@' is an address, else a domain."""
    if not entries:
        return True
    address = address.lower()
    domain = address.rpartition("@")[2]
    return any(address == e if "@" in e else domain == e.lstrip("@") for e in entries)


def smtp_settings(
    overrides: SmtpOverrides | None, env: Mapping[str, str] | None = None
) -> SmtpSettings:
    """The server to send through: the environment's, with the input's overrides on top.

    Raises:
        EmailRefusedError: the input overrides the server, TLS or credentials while the
            credentials come from the workers' environment.
    """
    env = os.environ if env is None else env
    given = overrides.model_dump(exclude_none=True) if overrides is not None else {}
    if env.get("WFRAY_SMTP_USERNAME") or env.get("WFRAY_SMTP_PASSWORD"):
        locked = [name for name in _LOCKED_FIELDS if name in given]
        if locked:
            raise EmailRefusedError(
                f"SMTP {', '.join(locked)} refused in the task input: the SMTP credentials "
                "come from the workers' environment (WFRAY_SMTP_*), so the server, port, TLS "
                "and credentials are the operator's; only timeout_s may be given"
            )
    if overrides is not None and overrides.password is not None:
        given["password"] = reveal(overrides.password)
    return SmtpSettings.from_env(env, **given)


class EmailReceipt(BaseModel):
    """What the server accepted. `refused` maps recipients it refused to its reply."""

    message_id: str
    accepted: list[str]
    refused: dict[str, str]


def send_message(
    settings: SmtpSettings, message: OutgoingEmail, message_id: str | None = None
) -> EmailReceipt:
    """Send one message; SMTP failures become RetryLater (transient) or NonRetryableError.

    Args:
        settings: the server.
        message: the message; its `message_id` wins over the `message_id` argument.
        message_id: the Message-ID to use when the message has none.
    """
    chosen = message.message_id or message_id
    if chosen is None:
        raise NonRetryableError(
            "the message needs a deterministic message_id (for example "
            "'<RE-2025-0001@billing.example>') so a repeated send can be recognised"
        )
    try:
        chosen = normal_message_id(chosen)
        mime = build_message(message, chosen)
    except ValueError as exc:  # the email package refuses e.g. line breaks in headers
        raise NonRetryableError(f"message {chosen} cannot be built: {exc}") from exc
    where = f"SMTP {settings.host}:{settings.port}"
    try:
        refused = _deliver(settings, mime, parseaddr(message.sender)[1], message.recipients())
    except (smtplib.SMTPException, OSError) as exc:
        raise _classify(where, chosen, exc) from exc
    recipients = message.recipients()
    return EmailReceipt(
        message_id=chosen,
        accepted=[r for r in recipients if r not in refused],
        refused={
            r: f"{code} {reply.decode(errors='replace')}" for r, (code, reply) in refused.items()
        },
    )


def _deliver(
    settings: SmtpSettings, mime: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    smtp_class = smtplib.SMTP_SSL if settings.ssl else smtplib.SMTP
    with smtp_class(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
        if settings.starttls and not settings.ssl:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password or "")
        # the envelope is the message's own addresses, never Sender or Resent-* headers
        return smtp.send_message(mime, sender, recipients)


def _classify(where: str, message_id: str, exc: BaseException) -> StepError:
    code = _reply_code(exc)
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # e.g. STARTTLS asked, not offered
        return NonRetryableError(f"{where} cannot send message {message_id} ({detail})")
    if code is None:
        # no reply at all: refused, reset, timed out or dropped connection
        return RetryLater(
            f"{where} could not take message {message_id} ({detail}); retrying in "
            f"{CONNECTION_RETRY_DELAY_S:g} s",
            delay_s=CONNECTION_RETRY_DELAY_S,
        )
    if 400 <= code < 500:
        return RetryLater(
            f"{where} answered {code} (transient) for message {message_id} ({detail}); "
            f"retrying in {TRANSIENT_REPLY_DELAY_S:g} s",
            delay_s=TRANSIENT_REPLY_DELAY_S,
        )
    return NonRetryableError(
        f"{where} answered {code} (permanent) for message {message_id} ({detail})"
    )


def _reply_code(exc: BaseException) -> int | None:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        # one permanent refusal makes the whole send permanent; all transient means retry
        return max(codes) if codes else None
    if isinstance(exc, smtplib.SMTPResponseException):
        return int(exc.smtp_code)
    return None


@task(pool="io")
def send_email(
    message: OutgoingEmail,
    smtp: SmtpOverrides | None = None,
    ctx: StepContext | None = None,
) -> EmailReceipt:
    """Send `message` over SMTP; settings left out of `smtp` come from WFRAY_SMTP_*.

    Raises:
        EmailRefusedError: `smtp` overrides the operator's server or credentials, or the
            message breaks the sender or recipient allowlists or the recipient cap.
    """
    settings = smtp_settings(smtp)
    SmtpPolicy.from_env().check(message)
    fallback = derived_message_id(ctx.idempotency_key) if ctx is not None else None
    receipt = send_message(settings, message, fallback)
    if ctx is not None:
        ctx.logger.info(
            "sent %s to %d recipients (%d refused)",
            receipt.message_id,
            len(receipt.accepted),
            len(receipt.refused),
        )
    return receipt
