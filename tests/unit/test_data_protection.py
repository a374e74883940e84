"""Settings and config objects keep passwords, tokens and secret keys out of their repr."""

from __future__ import annotations

from wfray.config import load_settings, mask_url_password

PASSWORD = "hunter2-Secret"
ENV = {
    "WFRAY_DATABASE_URL": f"postgresql+psycopg://wfray:{PASSWORD}@db.internal:5432/wfray",
    "WFRAY_BLOB_ROOT": f"s3://AKIAEXAMPLE:{PASSWORD}@results-bucket/wfray",
    "WFRAY_API_TOKEN": f"token-{PASSWORD}",
}


def test_settings_repr_and_str_hide_the_database_password_the_token_and_blob_keys() -> None:
    settings = load_settings(env=ENV)
    for shown in (repr(settings), str(settings), f"{settings}", repr([settings])):
        assert PASSWORD not in shown
        assert "postgresql+psycopg://wfray:***@db.internal:5432/wfray" in shown
        assert "s3://AKIAEXAMPLE:***@results-bucket/wfray" in shown
    # the values themselves are untouched: only their display is masked
    assert PASSWORD in settings.database_url and settings.api_token == f"token-{PASSWORD}"


def test_a_setting_named_like_a_secret_is_masked_even_without_repr_false() -> None:
    from dataclasses import dataclass

    from wfray.config import masked_repr

    @dataclass(frozen=True)
    class Later:
        smtp_password: str | None = None
        ninox_api_key: str | None = None
        host: str = "mail.example"

        def __repr__(self) -> str:
            return masked_repr(self)

    shown = repr(Later(PASSWORD, PASSWORD))
    assert PASSWORD not in shown
    assert "smtp_password=***" in shown and "host='mail.example'" in shown
    assert "smtp_password=None" in repr(Later())


def test_url_passwords_are_masked_whole_even_with_an_unescaped_at_sign() -> None:
    assert mask_url_password("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert mask_url_password("sqlite:////tmp/wfray.db") == "sqlite:////tmp/wfray.db"
    assert mask_url_password("postgresql://u@h/db") == "postgresql://u@h/db"


def test_smtp_settings_hide_their_password() -> None:
    from wfray.integrations.email import SmtpOverrides, SmtpSettings

    assert PASSWORD not in repr(SmtpSettings(username="u", password=PASSWORD))
    assert PASSWORD not in repr(SmtpOverrides(password=PASSWORD))
