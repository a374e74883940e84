"""Every command the README tells a user to run still starts: a rename that breaks
`python -m bench.throughput` (it happened once) fails here, not on a user's machine.

Each command is started with `--help`, which imports the module and builds its argument
parser without starting Ray, so the check costs an import per command.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# `python -m package.module` for the project's own packages (not the user's examples such as
# `python -m jobs.my_job` or `python -m package.module`, which the README names as patterns).
_MODULE = re.compile(r"python -m ((?:bench|jobs|wfray)(?:\.[a-z_]+)+)")
# A line of commands may chain several: `wfray cancel RUN;  wfray retry RUN`.
_CLI = re.compile(r"(?:^|;\s+)wfray ([a-z][a-z-]*)", re.MULTILINE)
_PATTERNS = {"jobs.my_job"}


def readme_modules() -> list[str]:
    found = {m for m in _MODULE.findall(README) if m not in _PATTERNS}
    # `make demo` runs it (Makefile), so the README names it through make.
    found.add("jobs.demo")
    return sorted(found)


def readme_cli_commands() -> list[str]:
    return sorted(set(_CLI.findall(README)))


def test_the_readme_names_commands_to_check() -> None:
    assert "bench.throughput" in readme_modules()
    assert "submit" in readme_cli_commands()


@pytest.mark.parametrize("module", readme_modules())
def test_a_module_the_readme_runs_starts(module: str) -> None:
    assert (ROOT / Path(*module.split("."))).with_suffix(".py").exists(), (
        f"the README runs `python -m {module}`, which does not exist"
    )
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"python -m {module} --help failed:\n{done.stderr[-3000:]}"
    assert "usage" in done.stdout.lower()


@pytest.mark.parametrize("command", readme_cli_commands())
def test_a_cli_command_the_readme_shows_exists(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "wfray.entrypoints.cli", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"wfray {command} --help failed:\n{done.stderr[-3000:]}"
