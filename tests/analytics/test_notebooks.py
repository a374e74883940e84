"""Both notebooks run top to bottom (nbclient, a real python3 kernel) on generated history.

A cell error fails the test. The notebooks in the repository must carry no outputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from wfray.analytics import HistorySummary, generate_history

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, HistorySummary]:
    # Now-relative (no fixed `now`): the operator notebook looks at the last hours.
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'wfray.db'}"
    return url, generate_history(url, runs=800, days=14, seed=42, active=9)


def execute(name: str, url: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run notebook `name` against the store at `url`; all of its text output."""
    assert "python3" in KernelSpecManager().find_kernel_specs(), "no python3 kernel spec"
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    monkeypatch.setenv("WFRAY_STORE_URL", url)  # the kernel inherits the environment
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


@pytest.mark.parametrize("name", ["analyst.ipynb", "operator.ipynb"])
def test_notebooks_in_the_repository_carry_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_analyst_notebook_runs_and_draws_its_charts(
    history: tuple[str, HistorySummary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, summary = history

    output = execute("analyst.ipynb", url, tmp_path, monkeypatch)

    assert str(summary.runs) in output  # the opening count of runs
    assert output.count("<Figure size") == 3  # runs per day, durations, resource-seconds
    for heading in ("p50_s", "failed_pct", "slowness", "resource_seconds", "retries"):
        assert heading in output


def test_operator_notebook_lists_stuck_failed_and_dead_letter_runs(
    history: tuple[str, HistorySummary], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, summary = history

    output = execute("operator.ipynb", url, tmp_path, monkeypatch)

    dead = summary.run_statuses["compensation_failed"]
    assert dead > 0
    assert f"{dead} runs in compensation_failed" in output
    # generate_history leaves every third active run (3 of 9) running or queued for hours
    assert re.search(r"\b[1-9]\d* tasks running for more than 1:00:00", output)
    assert re.search(r"\b[1-9]\d* queue/step groups with tasks queued for more than", output)
    assert "runs failed since" in output
    assert output.count("<Figure size") == 1
