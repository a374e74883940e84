"""The README's "Testing your workflows" example runs as written, under pytest, in a fresh
process, and is fast: a rename in the kit or a wrong line in the example fails here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_example() -> str:
    section = README.split("### Testing your workflows", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README's testing section lost its example"
    return found.group(1)


def test_the_example_is_a_pytest_module_with_a_test() -> None:
    code = readme_example()
    assert "from wfray.testing import local_wfray" in code
    assert re.search(r"^def test_\w+\(", code, re.MULTILINE)
    assert "clock.advance(" in code


def test_the_readme_example_passes_under_pytest_in_milliseconds(tmp_path: Path) -> None:
    (tmp_path / "test_payments.py").write_text(readme_example(), encoding="utf-8")
    path = os.pathsep.join([str(ROOT), str(tmp_path)])
    # the example needs no plugin: loading those of this environment would only cost time
    env = dict(os.environ, PYTHONPATH=path, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    began = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--durations=0",
            "--durations-min=0",
            "test_payments.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout, out.stdout
    spent = re.search(r"([\d.]+)s call\s+test_payments.py::", out.stdout)
    assert spent is not None, out.stdout
    assert float(spent.group(1)) < 2.0, f"the example's test took {spent.group(1)} s"
    assert time.perf_counter() - began < 60
