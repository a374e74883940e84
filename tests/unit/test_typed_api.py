"""The decorators keep the types of what they decorate: a user's mypy sees a step or a task
as the function it wrote, not as Any."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parents[2]

USER_MODULE = """
from wfray import StepContext, Workflow, task

flow = Workflow("typed_api")


@flow.step
def first() -> int:
    return 1


@flow.step(pool="io", timeout_s=5)
def second(first: int, ctx: StepContext) -> str:
    return str(first)


@task
def plain(x: int) -> float:
    return x / 2


@task(pool="io")
async def plain_io(x: int) -> bytes:
    return b""


reveal_type(first)
reveal_type(second)
reveal_type(plain)
reveal_type(plain_io)
second("not an int", None)
"""


@pytest.mark.timeout(300)
def test_a_users_type_checker_sees_the_decorated_functions(tmp_path: Path) -> None:
    module = tmp_path / "user_flows.py"
    module.write_text(USER_MODULE)
    out, err, _ = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", str(module)]
    )
    # mypy versions differ in how much of a name they print: builtins.int or int
    revealed = [
        re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", found)
        for found in re.findall(r'Revealed type is "(.*)"', out)
    ]
    assert revealed == [
        "def () -> int",
        "def (first: int, ctx: StepContext) -> str",
        "def (x: int) -> float",
        "def (x: int) -> Coroutine[Any, Any, bytes]",
    ], out + err
    # and so it catches a wrong call
    assert 'Argument 1 to "second" has incompatible type "str"; expected "int"' in out, out
