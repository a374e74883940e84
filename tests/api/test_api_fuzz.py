"""Fuzz the API from its own OpenAPI schema: whatever a client sends, no 5xx, and every
answer is one the schema documents (status code, content type, body).

Twice: on the app without a token, and on the app behind one (sent with every request),
so the routes past the authentication are fuzzed too. Bounded: a fixed number of
generated cases per operation (valid ones, then invalid ones).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api.conftest import TOKEN, Api

CASES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}  # per operation
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("app", ["api", "secured"])
def test_no_generated_request_makes_the_api_fail(app: str, request: pytest.FixtureRequest) -> None:
    served: Api = request.getfixturevalue(app)
    headers = {"Authorization": f"Bearer {TOKEN}"} if app == "secured" else {}
    # The schema the clients see, from the served API itself.
    document = httpx.get(f"{served.url}/openapi.json", headers=headers, timeout=30)
    schema = schemathesis.openapi.from_dict(document.raise_for_status().json())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:
        for mode, count in CASES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                # On Ray Serve a request takes milliseconds: hypothesis's speed checks misfire.
                suppress_health_check=list(HealthCheck),
            )
            def conforms(case: Any) -> None:
                response = case.call(base_url=served.url, headers=headers, timeout=30)
                statuses.append(response.status_code)
                case.validate_response(response, checks=CHECKS)

            try:
                conforms()
            except Unsatisfiable:
                # No parameters, nothing to get wrong: only valid requests exist.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except AssertionError as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # Not vacuous: many requests went out, and both accepted and refused ones among them.
    assert len(statuses) >= 10 * len(operations)
    # (with the token, 200 and 202 show requests got past authentication; negative cases
    # may break the Authorization header itself, and get 401)
    assert {200, 202, 404, 422} <= set(statuses), sorted(set(statuses))
