"""Item 1 of issue 13: a `render_pdf` input names a registered template, never code.

Until then `find_template` imported any 'module:function' named in the task input, so a
run started over HTTP with the template 'subprocess:getoutput' ran a shell command on a
worker. Here the code a caller names is a function of this module that leaves a mark when
it runs: the tests check the refusal and that the mark was never made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from reportlab.platypus import Flowable

from tests.integrations import run_inline
from wfray.domain.errors import InputValidationError, NonRetryableError
from wfray.domain.status import RunStatus
from wfray.integrations.pdf import render_pdf
from wfray.sdk.definition import encode_input

MARK_ENV = "WFRAY_TEST_PDF_TEMPLATE_MARK"
ATTACK = f"{__name__}:leave_a_mark"


def leave_a_mark(data: Mapping[str, Any]) -> list[Flowable]:
    """What an attacker's 'template' does: anything at all, here touching a file."""
    Path(os.environ[MARK_ENV]).write_text("ran")
    return []


@pytest.fixture
def mark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mark"
    monkeypatch.setenv(MARK_ENV, str(path))
    return path


@pytest.mark.parametrize("template", [ATTACK, "subprocess:getoutput", "os:system"])
def test_a_template_named_by_import_path_is_refused_and_never_runs(
    template: str, mark: Path
) -> None:
    with pytest.raises(NonRetryableError, match="not imported by path") as refused:
        render_pdf(template, {"cmd": "true"})
    assert template in str(refused.value) and "register_template" in str(refused.value)
    assert not mark.exists()


def test_a_run_naming_code_fails_for_good_without_running_it(mark: Path) -> None:
    view, attempts = run_inline(render_pdf, {"template": ATTACK, "data": {}})
    assert view.status is RunStatus.FAILED
    (attempt,) = attempts  # refused for good: no retry
    assert attempt.error_type == "wfray.domain.errors.NonRetryableError"
    assert "not imported by path" in (attempt.error_message or "")
    assert not mark.exists()


def test_the_input_model_refuses_a_path_before_a_run_is_stored() -> None:
    flow = render_pdf.__wfray_workflow__  # type: ignore[attr-defined]
    with pytest.raises(InputValidationError, match="template: String should match"):
        encode_input(flow, {"template": "subprocess:getoutput", "data": {}})
    assert '"table"' in encode_input(flow, {"template": "table", "data": {}})
