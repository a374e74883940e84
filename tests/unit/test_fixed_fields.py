"""Fields fixed at a run's or a task's creation (`RUN_FIXED`, `TASK_FIXED`) are written by
the insert only: an update leaves them, and the indexes on them, as they are. So nothing in
wfray may change them once the row exists; these tests find every place that could."""

from __future__ import annotations

import ast
from pathlib import Path

import wfray
from wfray.domain.records import RUN_FIXED, TASK_FIXED, RunRecord, TaskRecord

FIXED = set(RUN_FIXED) | set(TASK_FIXED)
PACKAGE = Path(wfray.__file__).parent

# (module, what is assigned): intake fills these in on a new run, before its insert
AT_CREATION = {
    ("coordinator/intake.py", "run.env_hash"),
    ("coordinator/intake.py", "run.deadline_at"),
}
# the same names on other things, read and checked once: not a run's or a task's fields
ELSEWHERE = {
    ("adapters/memory/writer.py", "setattr(name)"): "the memory store keeps fixed fields",
    ("analytics/history.py", "setattr(table)"): "a summary's counters",
    ("domain/claims.py", "replace(...)"): "a claim's own version",
}


def _changes_to_fixed_fields(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if node.attr in FIXED:
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called.endswith("setattr") and len(node.args) > 1:
                name = node.args[1]
                if not (isinstance(name, ast.Constant) and name.value not in FIXED):
                    found.append((node.lineno, f"setattr({ast.unparse(name)})"))
            if called.endswith("replace") and any(k.arg in FIXED for k in node.keywords):
                found.append((node.lineno, f"{called}(...)"))
    return found


def test_only_intake_sets_fixed_fields_and_only_on_a_new_run() -> None:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for line, what in _changes_to_fixed_fields(ast.parse(path.read_text())):
            found.add((module, what, line))
    unexpected = {
        (module, what, line)
        for module, what, line in found
        if (module, what) not in AT_CREATION and (module, what) not in ELSEWHERE
    }
    assert unexpected == set(), "a fixed field changed after creation is never stored"
    assert {(module, what) for module, what, _ in found} >= AT_CREATION  # the scan sees them


def test_the_scan_finds_each_way_of_changing_a_field() -> None:
    source = """
state.run.priority = 3
task.queue += "x"
setattr(run, "input_json", "{}")
setattr(run, name, value)
dataclasses.replace(task, pool="io")
run.status = "done"
setattr(run, "status", "done")
"""
    found = [what for _, what in _changes_to_fixed_fields(ast.parse(source))]
    assert found == [
        "state.run.priority",
        "task.queue",
        "setattr('input_json')",
        "setattr(name)",
        "dataclasses.replace(...)",
    ]


def test_fixed_fields_are_fields_of_their_records() -> None:
    assert set(RUN_FIXED) <= set(RunRecord.__dataclass_fields__)
    assert set(TASK_FIXED) <= set(TaskRecord.__dataclass_fields__)
    assert not {"status", "run_id", "step", "map_index"} & FIXED
