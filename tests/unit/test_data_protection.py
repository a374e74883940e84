"""Settings and config objects keep passwords, tokens and secret keys out of their repr."""

from __future__ import annotations

from wfray.config import load_settings, mask_url_password
from wfray.domain.reads import RunFilter

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


# -- run ids and blob keys -------------------------------------------------------------------


def test_run_ids_that_could_be_a_path_are_refused_with_a_typed_error() -> None:
    import pytest

    from wfray.domain.errors import InvalidRunIdError
    from wfray.domain.ids import blob_key, check_run_id

    for bad in ["../x", "..", ".", "a/b", "/abs", "a\\b", "", " x", "x\n", "é", "a" * 201, None]:
        with pytest.raises(InvalidRunIdError, match="is refused"):
            check_run_id(bad)
        with pytest.raises(InvalidRunIdError):
            blob_key(bad, "step", -1, 1)  # type: ignore[arg-type]
    for good in ["0f3a", "order-42:v1", "evt-" + "a" * 32, "a..b", "x@y+z=1", "a" * 200]:
        assert check_run_id(good) == good
    assert blob_key("r1", "fetch", 3, 2) == "r1/fetch/3-2.json"


# -- the blob root on a cluster of several nodes ---------------------------------------------


def test_a_folder_blob_root_is_refused_on_several_nodes_unless_declared_shared() -> None:
    import pytest

    from wfray.adapters.blob import check_blob_root
    from wfray.domain.errors import BlobRootError

    with pytest.raises(BlobRootError, match=r"has 3 nodes.*WFRAY_BLOB_ROOT_SHARED"):
        check_blob_root("/data/wfray/blobs", shared=False, alive_nodes=3)
    with pytest.raises(BlobRootError):
        check_blob_root("file:///data/blobs", shared=False, alive_nodes=2)
    check_blob_root("/data/wfray/blobs", shared=False, alive_nodes=1)  # one node: fine
    check_blob_root("/mnt/nfs/blobs", shared=True, alive_nodes=3)  # the operator's word
    check_blob_root("s3://bucket/wfray", shared=False, alive_nodes=3)  # an object store


def test_blob_root_shared_is_parsed_strictly() -> None:
    import pytest

    from wfray.domain.errors import DefinitionError

    assert load_settings(env={}).blob_root_shared is False
    assert load_settings(env={"WFRAY_BLOB_ROOT_SHARED": "true"}).blob_root_shared is True
    assert load_settings(env={"WFRAY_BLOB_ROOT_SHARED": "0"}).blob_root_shared is False
    with pytest.raises(DefinitionError, match="WFRAY_BLOB_ROOT_SHARED must be true or false"):
        load_settings(env={"WFRAY_BLOB_ROOT_SHARED": "nfs"})


# -- event payloads --------------------------------------------------------------------------


def test_an_event_payload_one_subscriber_refuses_starts_no_run_for_any() -> None:
    import asyncio
    import json

    import pytest

    from tests.fixtures import unit_flows
    from tests.unit.test_coordinator_inline import coordinator
    from wfray.adapters.memory.store import InMemoryRunStore
    from wfray.domain.errors import InputValidationError
    from wfray.sdk.events import validated_inputs

    async def scenario() -> None:
        store = InMemoryRunStore()
        async with coordinator(store) as c:
            # a publisher that skipped validation: the coordinator stores nothing unchecked
            with pytest.raises(InputValidationError, match="unit_on_delivered_a") as refused:
                await c.publish("order.delivered", '{"order": "seven"}', "evt-raw")
            assert "unit_on_delivered_b" in str(refused.value)
            # the publisher's check names the subscriber and the field
            with pytest.raises(InputValidationError) as bad:
                validated_inputs("order.delivered", {"order": "seven"}, unit_flows.ALL)
            assert "subscriber 'unit_on_delivered_a'" in str(bad.value)
            assert "order: Input should be a valid integer" in str(bad.value)
            assert store.list_runs(RunFilter(limit=10)) == []
            inputs = validated_inputs("order.delivered", {"order": "7"}, unit_flows.ALL)
            started = await c.publish("order.delivered", "ignored", "evt-ok", inputs=inputs)
            assert len(started) == 2
            stored = store.find_runs(started).values()
            assert [json.loads(r.input_json) for r in stored] == [{"order": 7}] * 2

    asyncio.run(asyncio.wait_for(scenario(), 20))
