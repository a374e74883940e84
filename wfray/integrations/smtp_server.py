"""The SMTP server a message goes through: `SmtpSettings` (filled from WFRAY_SMTP_*) and
the task input's `SmtpOverrides` of them."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from wfray.domain.errors import NonRetryableError
from wfray.sdk.secrets import SecretRef


class SmtpSettings(BaseModel):
    """Where and how to send. `from_env` fills it from WFRAY_SMTP_* variables."""

    model_config = ConfigDict(frozen=True)

    host: str = "localhost"
    port: int = Field(default=25, gt=0, lt=65536)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = False
    ssl: bool = False
    timeout_s: float = Field(default=30.0, gt=0)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> SmtpSettings:
        """Settings from WFRAY_SMTP_* variables, with explicit values (not None) on top."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(f"WFRAY_SMTP_{name.upper()}")
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in explicit.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise NonRetryableError(
                f"SMTP settings (task input `smtp`, else WFRAY_SMTP_* variables) are invalid: {exc}"
            ) from exc


class SmtpOverrides(BaseModel):
    """The task input's SMTP settings; what is left out comes from WFRAY_SMTP_* variables.

    When the workers' environment holds SMTP credentials, only `timeout_s` may be given.
    """

    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | SecretRef | None = Field(default=None, repr=False)
    starttls: bool | None = None
    ssl: bool | None = None
    timeout_s: float | None = None
