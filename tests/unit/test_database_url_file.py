"""WFRAY_DATABASE_URL_FILE: the store's URL read from a file the operator mounts (a secret),
so that no config file holds the password; errors name the file, never what is in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from wfray.config import load_settings
from wfray.domain.errors import DefinitionError

PASSWORD = "hunter2-Secret"
URL = f"postgresql+psycopg://wfray:{PASSWORD}@db.internal:5432/wfray"


def settings_from(path: Path, tmp_path: Path) -> str:
    env = {"WFRAY_DATABASE_URL_FILE": str(path)}
    return load_settings(env=env, data_dir=str(tmp_path)).database_url


def test_the_url_is_read_from_the_file_with_its_newline_trimmed(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text(URL + "\n")
    assert settings_from(secret, tmp_path) == URL
    shown = repr(load_settings(env={"WFRAY_DATABASE_URL_FILE": str(secret)}))
    assert PASSWORD not in shown  # read from a file, masked like any other URL


def test_without_either_variable_the_store_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = load_settings(env={}, data_dir=str(tmp_path)).database_url
    assert url == f"sqlite:///{tmp_path}/wfray.db"


def refusal(path: Path, tmp_path: Path) -> str:
    with pytest.raises(DefinitionError) as caught:
        settings_from(path, tmp_path)
    message = str(caught.value)
    assert "WFRAY_DATABASE_URL_FILE" in message and PASSWORD not in message
    return message


def test_a_missing_or_unreadable_file_is_refused_naming_it(tmp_path: Path) -> None:
    assert "No such file" in refusal(tmp_path / "absent", tmp_path)
    assert "directory" in refusal(tmp_path, tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n\n",
        b"hunter2-Secret",  # a password alone, not a URL
        (URL + "\n" + URL).encode(),  # two lines
        (URL + "\x00").encode(),  # NUL byte
        b"postgresql://" + b"x" * 10_000,  # huge
        b"\xff\xfe<script>" + PASSWORD.encode(),  # not UTF-8, markup
    ],
    ids=["empty", "blank", "password", "two-lines", "nul", "huge", "binary"],
)
def test_a_file_that_holds_no_single_url_is_refused(tmp_path: Path, content: bytes) -> None:
    secret = tmp_path / "database_url"
    secret.write_bytes(content)
    refusal(secret, tmp_path)


def test_setting_both_the_url_and_the_file_is_ambiguous_and_refused(tmp_path: Path) -> None:
    secret = tmp_path / "database_url"
    secret.write_text(URL)
    env = {"WFRAY_DATABASE_URL_FILE": str(secret), "WFRAY_DATABASE_URL": URL}
    with pytest.raises(DefinitionError, match="not both"):
        load_settings(env=env, data_dir=str(tmp_path))
