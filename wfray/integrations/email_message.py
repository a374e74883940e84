"""An e-mail message as task input (`OutgoingEmail`, `Attachment`), checked field by field,
and the MIME message built from it with a deterministic Message-ID."""

from __future__ import annotations

import base64
import binascii
import hashlib
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from pydantic import BaseModel, ConfigDict, Field, field_validator

MESSAGE_ID_DOMAIN = "wfray.invalid"
# Headers the message model sets itself; `headers` may not override them.
_RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "mime-version"}
    | {"content-type", "content-transfer-encoding", "content-disposition"}
    | {"sender", "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc"}
    | {"resent-bcc", "resent-message-id"}
)


class Attachment(BaseModel):
    """A file attached to a message; its bytes travel base64-encoded so inputs stay JSON."""

    model_config = ConfigDict(frozen=True)

    filename: str = Field(min_length=1)
    content_type: str = "application/octet-stream"
    content_base64: str

    @classmethod
    def from_bytes(
        cls, filename: str, content: bytes, content_type: str = "application/octet-stream"
    ) -> Attachment:
        return cls(
            filename=filename,
            content_type=content_type,
            content_base64=base64.b64encode(content).decode("ascii"),
        )

    @field_validator("content_type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        main, slash, sub = value.partition("/")
        if not (main and slash and sub) or any(c.isspace() for c in value):
            raise ValueError(f"expected a MIME type like 'application/pdf', got {value!r}")
        return value.lower()

    @field_validator("content_base64")
    @classmethod
    def _check_base64(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"content_base64 is not valid base64 ({exc})") from exc
        return value

    def content(self) -> bytes:
        return base64.b64decode(self.content_base64)


class OutgoingEmail(BaseModel):
    """One e-mail message. Addresses may carry a display name: 'Anna <anna@example.org>'.

    Attributes:
        message_id: a stable Message-ID such as '<RE-2025-0001@billing.example>' (angle
            brackets added when missing); the same message must always get the same id.
        headers: extra headers (X-Invoice-No, Reply-To, ...), not the ones set from fields.
    """

    sender: str
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str
    text: str
    html: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    message_id: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("sender")
    @classmethod
    def _check_sender(cls, value: str) -> str:
        _check_address(value)
        return value

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _check_recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            _check_address(address)
        return value

    @field_validator("message_id")
    @classmethod
    def _check_message_id(cls, value: str | None) -> str | None:
        return None if value is None else normal_message_id(value)

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set from the message fields, not headers")
            if not name or any(c.isspace() or c == ":" for c in name) or "\n" in text:
                raise ValueError(
                    f"header {name!r}: expected a name without spaces or ':' "
                    "and a single-line value"
                )
        return value

    def recipients(self) -> list[str]:
        return [parseaddr(a)[1] for a in [*self.to, *self.cc, *self.bcc]]


def normal_message_id(value: str) -> str:
    """'<id@domain>' from 'id@domain' or '<id@domain>'; ValueError for anything else."""
    bare = value.strip().removeprefix("<").removesuffix(">")
    left, at, right = bare.partition("@")
    if not (left and at and right) or any(c.isspace() or c in "<>" for c in bare):
        raise ValueError(f"expected a Message-ID like '<id@domain>', got {value!r}")
    return f"<{bare}>"


def _check_address(value: str) -> None:
    address = parseaddr(value)[1]
    local, at, domain = address.rpartition("@")
    if not (local and at and domain) or "\n" in value:
        raise ValueError(f"expected an e-mail address like 'name@example.org', got {value!r}")


def build_message(message: OutgoingEmail, message_id: str) -> EmailMessage:
    """The MIME message: text (and HTML alternative), attachments, the given Message-ID."""
    mime = EmailMessage()
    mime["From"] = message.sender
    mime["To"] = ", ".join(message.to)
    if message.cc:
        mime["Cc"] = ", ".join(message.cc)
    if message.bcc:
        mime["Bcc"] = ", ".join(message.bcc)  # smtplib strips it before sending
    mime["Subject"] = message.subject
    mime["Date"] = formatdate(usegmt=True)
    mime["Message-ID"] = message_id
    for name, value in message.headers.items():
        mime[name] = value
    mime.set_content(message.text)
    if message.html is not None:
        mime.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        mime.add_attachment(
            attachment.content(), maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return mime


def derived_message_id(idempotency_key: str, domain: str = MESSAGE_ID_DOMAIN) -> str:
    """A Message-ID that is the same for every attempt of the same run step."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"
