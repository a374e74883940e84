"""Fuzz the API from its own OpenAPI schema: whatever a client sends, no 5xx.

Bounded: a fixed number of generated cases per operation (valid ones, then invalid ones),
so the whole run stays within about a minute.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.api.conftest import Api

CASES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 10}  # per operation


def test_no_generated_request_makes_the_api_fail(api: Api) -> None:
    # Loaded from the served API itself, so the fuzzed schema is the one clients see.
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
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
            def no_server_error(case: Any) -> None:
                response = case.call(base_url=api.url, timeout=30)
                statuses.append(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])

            try:
                no_server_error()
            except Unsatisfiable:
                # No parameters, nothing to get wrong: only valid requests exist.
                assert mode is GenerationMode.NEGATIVE, operation.label
            except AssertionError as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    # Not vacuous: many requests went out, and both accepted and refused ones among them.
    assert len(statuses) >= 10 * len(operations)
    assert {200, 202, 404, 422} <= set(statuses), sorted(set(statuses))
