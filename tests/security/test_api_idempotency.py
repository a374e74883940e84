"""An idempotency key answers one request: sent again with another workflow or input it is
refused (409 over HTTP, IdempotencyConflictError in Python), never answered with a run
that did something else."""

from __future__ import annotations

import uuid

import pytest

from tests.security._api_support import SUBMIT, SecuredApi, auth, secured_api
from wfray.domain.errors import IdempotencyConflictError

__all__ = ["secured_api"]


def post(api: SecuredApi, key: str, workflow: str, input: object, **extra: object) -> object:
    return api.http.post(
        "/v1/runs",
        json={"workflow": workflow, "input": input, **extra},
        headers={"Idempotency-Key": key, **auth(SUBMIT)},
    )


def test_the_same_key_with_another_input_or_workflow_is_409(secured_api: SecuredApi) -> None:
    key = f"order-{uuid.uuid4().hex}"
    first = post(secured_api, key, "numbers", {"count": 2})
    again = post(secured_api, key, "numbers", {"count": 2})
    other_input = post(secured_api, key, "numbers", {"count": 3})
    other_flow = post(secured_api, key, "noop", {})
    other_priority = post(secured_api, key, "numbers", {"count": 2}, priority=7)

    assert first.status_code == again.status_code == 202  # type: ignore[attr-defined]
    assert again.json()["run_id"] == first.json()["run_id"]  # type: ignore[attr-defined]
    for refused in (other_input, other_flow, other_priority):
        assert refused.status_code == 409, refused.text  # type: ignore[attr-defined]
        error = refused.json()["error"]  # type: ignore[attr-defined]
        assert error["code"] == "idempotency_conflict"
        assert key in error["message"]
    assert "'numbers'" in other_flow.json()["error"]["message"]  # type: ignore[attr-defined]


def test_the_python_client_raises_a_typed_error(secured_api: SecuredApi) -> None:
    from tests.fixtures.flows import numbers

    client = secured_api.client
    key = f"py-{uuid.uuid4().hex}"
    handle = client.submit(numbers, {"count": 2}, idempotency_key=key)
    # the same request, keys of a dict in another order: the same run
    assert client.submit(numbers, {"count": 2}, idempotency_key=key).run_id == handle.run_id

    with pytest.raises(IdempotencyConflictError, match="another input"):
        client.submit(numbers, {"count": 4}, idempotency_key=key)
    with pytest.raises(IdempotencyConflictError, match="workflow 'numbers'"):
        client.submit("noop", {}, idempotency_key=key)
    with pytest.raises(IdempotencyConflictError):
        client.submit_many(numbers, [{"count": 2}], idempotency_keys=[key], queue="declared_q")
