"""Configuration of the invoice workflows: where Ninox and the SMTP server are, who invoices.

A run's input may carry an `InvoiceSettings` (the demo and the tests do, so every worker
sees the same local servers); its Ninox key is then a secret by name
(`{"secret": "NINOX_API_KEY"}`), resolved on the worker from wfray's secret sources, so the
key never lands in the run's stored input. Scheduled runs carry none: each step then reads
the settings on the worker with `InvoiceSettings.from_env()`. Variables:

    INVOICES_NINOX_URL        API root (default: the public cloud, https://api.ninox.com/v1)
    INVOICES_NINOX_API_KEY    bearer key                   (required)
    INVOICES_NINOX_TEAM       team (workspace) id          (required)
    INVOICES_NINOX_DATABASE   database id                  (required)
    INVOICES_SMTP_HOST / INVOICES_SMTP_PORT               (default localhost:25)
    INVOICES_SENDER           From: of invoice e-mails
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.invoices.invoice_pdf import Supplier
from jobs.invoices.ninox_client import PUBLIC_CLOUD_URL, NinoxConfig
from wfray.domain.errors import NonRetryableError
from wfray.integrations.email import SmtpSettings
from wfray.sdk.secrets import SecretRef, reveal

ENV_PREFIX = "INVOICES_"

DEMO_SUPPLIER = Supplier(
    name="Bürobedarf Sonnenschein GmbH",
    address=["Friedrichstraße 123", "10117 Berlin", "Deutschland"],
    tax_id="DE287654321",
    contact=["rechnung@sonnenschein.example", "Tel. +49 30 1234567"],
)


class NinoxTarget(BaseModel):
    """The Ninox database the workflows read orders from and write invoices to."""

    model_config = ConfigDict(frozen=True)

    base_url: str = PUBLIC_CLOUD_URL
    api_key: SecretRef | str = Field(repr=False)  # a secret by name in run inputs
    team_id: str = Field(min_length=1)
    database_id: str = Field(min_length=1)
    timeout_s: float = Field(default=15.0, gt=0)

    def config(self) -> NinoxConfig:
        return NinoxConfig(
            api_key=reveal(self.api_key),
            team_id=self.team_id,
            database_id=self.database_id,
            base_url=self.base_url,
            timeout_s=self.timeout_s,
        )


class InvoiceSettings(BaseModel):
    """Everything the invoice workflows need to know about the outside world.

    Attributes:
        ninox: the Ninox database.
        smtp: the SMTP server invoices are sent through.
        supplier: the invoicing company, printed on every invoice.
        sender: the From: address of invoice e-mails.
        message_domain: the right-hand side of the deterministic Message-IDs.
        number_prefix: invoice numbers read `<prefix>-<year>-<000123>`.
        timezone: the business time zone (invoice dates, ISO weeks).
        claim_scope: prefixes the keys the workflows claim in wfray's store (one invoice,
            one weekly e-mail), so two Ninox databases served by one wfray never share a
            claim. Default: `<team id>/<database id>`.
    """

    model_config = ConfigDict(frozen=True)

    ninox: NinoxTarget
    smtp: SmtpSettings = SmtpSettings()
    supplier: Supplier = DEMO_SUPPLIER
    sender: str = "Sonnenschein Rechnungen <rechnung@sonnenschein.example>"
    message_domain: str = "billing.example"
    number_prefix: str = Field(default="RE", pattern=r"^[A-Z][A-Z0-9]{0,9}$")
    timezone: str = "Europe/Berlin"
    claim_scope: str | None = Field(default=None, min_length=1, max_length=80)

    @property
    def scope(self) -> str:
        """The prefix of this database's claim keys."""
        return self.claim_scope or f"{self.ninox.team_id}/{self.ninox.database_id}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"expected an IANA time zone like 'Europe/Berlin', got {value!r}"
            ) from exc
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InvoiceSettings:
        """Settings from INVOICES_* variables (see the module docstring).

        Raises:
            NonRetryableError: naming the variables that are missing or wrong.
        """
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(ENV_PREFIX + name, "").strip()
            return value or None

        missing = [
            ENV_PREFIX + n for n in ("NINOX_API_KEY", "NINOX_TEAM", "NINOX_DATABASE") if not get(n)
        ]
        if missing:
            raise NonRetryableError(
                "the invoice run has no settings in its input and the environment lacks "
                f"{', '.join(missing)} (needed to reach Ninox)"
            )
        values: dict[str, object] = {
            "ninox": {
                "base_url": get("NINOX_URL") or PUBLIC_CLOUD_URL,
                "api_key": get("NINOX_API_KEY"),
                "team_id": get("NINOX_TEAM"),
                "database_id": get("NINOX_DATABASE"),
            },
            "smtp": {"host": get("SMTP_HOST") or "localhost", "port": get("SMTP_PORT") or 25},
        }
        if get("SENDER"):
            values["sender"] = get("SENDER")
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise NonRetryableError(f"INVOICES_* settings are invalid: {exc}") from exc


def resolve(settings: InvoiceSettings | None) -> InvoiceSettings:
    """The run's own settings, else those of the worker's environment."""
    return settings if settings is not None else InvoiceSettings.from_env()
