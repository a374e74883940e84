"""A local SMTP server (aiosmtpd) that saves every message it accepts as an .eml file.

    with running_sink(Path("demo-output/emails")) as sink:
        ...  # send to sink.host:sink.port
        for mail in sink.messages(): print(mail.message_id, mail.path)

It accepts any sender and recipient and never relays: the demo's and the tests' stand-in
for a company mail server. Files are named `<sequence>-<Message-ID>.eml`, so a duplicate
delivery shows up as two files with the same id.
"""

from __future__ import annotations

import email
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

_UNSAFE = re.compile(r"[^A-Za-z0-9._@-]+")


@dataclass(frozen=True, slots=True)
class SavedMessage:
    """One accepted message: the envelope, the parsed message and the file it was saved to."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message_id: str
    path: Path

    def parsed(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _SavingHandler:
    folder: Path
    on_message: Callable[[SavedMessage], None] | None = None
    saved: list[SavedMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        parsed = email.message_from_bytes(raw, policy=policy.default)
        message_id = str(parsed.get("Message-ID", "")).strip()
        with self.lock:
            name = _UNSAFE.sub("_", message_id.strip("<>")) or "no-message-id"
            path = self.folder / f"{len(self.saved) + 1:04d}-{name}.eml"
            path.write_bytes(raw)
            saved = SavedMessage(
                str(envelope.mail_from), tuple(envelope.rcpt_tos), message_id, path
            )
            self.saved.append(saved)
        if self.on_message is not None:
            self.on_message(saved)  # before the 250: a test may hold the reply here
        return "250 Message accepted for delivery"


@dataclass(frozen=True, slots=True)
class SmtpSink:
    """A running sink: where to send, and what it received so far."""

    host: str
    port: int
    folder: Path
    _handler: _SavingHandler

    def messages(self) -> list[SavedMessage]:
        with self._handler.lock:
            return list(self._handler.saved)


def free_port(host: str = "127.0.0.1") -> int:
    # aiosmtpd cannot take port 0: its ready-probe connects to the port it was given.
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_sink(
    folder: Path,
    host: str = "127.0.0.1",
    on_message: Callable[[SavedMessage], None] | None = None,
) -> Iterator[SmtpSink]:
    """Serve SMTP on `host` (a free port) in a background thread; .eml files go to `folder`.

    `on_message` is called with each message once it is saved and before the server's 250
    is sent, on the server's thread (tests use it to stop a sender mid-conversation).
    """
    folder.mkdir(parents=True, exist_ok=True)
    handler = _SavingHandler(folder, on_message)
    port = free_port(host)
    controller = Controller(handler, hostname=host, port=port, ready_timeout=10.0)
    controller.start()
    try:
        yield SmtpSink(host, port, folder, handler)
    finally:
        controller.stop()
