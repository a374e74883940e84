"""`python -m wfray.job`: what it refuses before it reaches Ray, each in one line with the
exit code `wfray submit` gives (tests/integration/test_job_entry_on_ray.py runs real jobs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wfray.entrypoints.cli_support import MAX_JSON_ARGUMENT_BYTES, Exit
from wfray.entrypoints.job import main

REPO_ROOT = Path(__file__).resolve().parents[2]
FLOWS = "tests.fixtures.flows"


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing here may reach a Ray cluster: none is named (a host may run others' ones)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("WFRAY_DATA_DIR", str(tmp_path / "no-instance"))


def job(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        ([f"{FLOWS}:numbers", "--input", "{bad"], Exit.USAGE, "--input: not valid JSON"),
        ([f"{FLOWS}:numbers", "--input", '{"count": "x"}'], Exit.USAGE, "count"),
        ([f"{FLOWS}:numbers"], Exit.USAGE, "does not match Numbers"),
        ([f"{FLOWS}:nothing_here"], Exit.NOT_FOUND, "has no attribute 'nothing_here'"),
        ([f"{FLOWS}:Numbers"], Exit.USAGE, "is a class, not a workflow"),
        ([f"{FLOWS}:make"], Exit.USAGE, "is a function, not a workflow"),
        ([f"{FLOWS}:FLOWS_PLAIN_VALUE"], Exit.NOT_FOUND, "no attribute"),
        (["no_such_module_xyz:flow"], Exit.USAGE, "cannot import workflow module"),
        (["tests.fixtures.broken_module_xyz:flow"], Exit.USAGE, "ModuleNotFoundError"),
        ([FLOWS], Exit.USAGE, "expected MODULE:WORKFLOW"),
        ([f"{FLOWS}:numbers:extra"], Exit.USAGE, "expected MODULE:WORKFLOW"),
        (["../etc/passwd:x"], Exit.USAGE, "expected MODULE:WORKFLOW"),
        (["<script>:x"], Exit.USAGE, "expected MODULE:WORKFLOW"),
        ([f"{FLOWS}:numbers", "--timeout", "-1"], Exit.USAGE, "--timeout"),
    ],
)
def test_refused_before_ray_in_one_line(
    capsys: pytest.CaptureFixture[str], args: list[str], code: Exit, says: str
) -> None:
    returned, out, err = job(capsys, *args)
    assert returned == code
    assert out == ""
    line = one_line(err)
    assert line.startswith("error: ") and says in line


def test_a_module_whose_import_raises_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "raising_flows_xyz.py").write_text("raise RuntimeError('no config here')\n")
    (tmp_path / "syntax_flows_xyz.py").write_text("def broken(:\n")
    monkeypatch.chdir(tmp_path)  # the current directory is on the path, as with `python -m`
    code, _, err = job(capsys, "raising_flows_xyz:flow")
    assert code == Exit.USAGE
    assert "RuntimeError: no config here" in one_line(err)
    code, _, err = job(capsys, "syntax_flows_xyz:flow")
    assert code == Exit.USAGE
    assert "SyntaxError" in one_line(err)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"count": 1\x00}', "not valid JSON"),
        (b"<html><body>1</body></html>", "not valid JSON"),
        (b"", "not valid JSON"),
    ],
    ids=["binary", "nul", "markup", "empty"],
)
def test_an_input_file_that_is_not_json_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, says: str
) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    code, _, err = job(capsys, f"{FLOWS}:numbers", "--input", f"@{path}")
    assert code == Exit.USAGE
    assert says in one_line(err)


def test_a_huge_input_file_is_refused_without_reading_it_all(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as sink:  # sparse: a 2 GiB file costs no disk
        sink.truncate(2 * 1024**3)
    code, _, err = job(capsys, f"{FLOWS}:numbers", "--input", f"@{path}")
    assert code == Exit.USAGE
    assert f"larger than {MAX_JSON_ARGUMENT_BYTES} bytes" in one_line(err)


def test_a_missing_input_file_or_a_folder_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for where in (tmp_path / "absent.json", tmp_path):
        code, _, err = job(capsys, f"{FLOWS}:numbers", "--input", f"@{where}")
        assert code == Exit.USAGE
        assert "cannot read" in one_line(err)


def test_without_a_named_cluster_it_does_not_guess_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = job(capsys, f"{FLOWS}:numbers", "--input", '{"count": 2}')
    assert code == Exit.UNREACHABLE and out == ""
    assert "no Ray cluster named" in one_line(err)


def test_bad_arguments_exit_2_with_usage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wfray.job", "--wait"],
        cwd=REPO_ROOT,
        env={**_no_ray_address(), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == Exit.USAGE
    assert "MODULE:WORKFLOW" in done.stderr and "Traceback" not in done.stderr


def test_the_module_runs_as_python_dash_m_and_lists_the_exit_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wfray.job", "--help"],
        cwd=REPO_ROOT,
        env={**_no_ray_address(), "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "the same as `wfray submit`" in done.stdout
    for code in Exit:
        assert f"\n  {int(code)}  " in done.stdout


def _no_ray_address() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
