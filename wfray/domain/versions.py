"""Which wfray a process runs, and whether two of them may work together.

The client, the coordinator and the executors exchange `Versions` when they meet: the
coordinator and executors are detached actors that outlive the code that made them, so one
found by name may run another wfray than the process that found it. Work only passes
between processes of the same wfray version at the same store schema: both sides pickle
wfray's own classes to each other and write the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from wfray.domain.errors import VersionMismatchError

# The one place the package's version is written (pyproject.toml reads it from here).
WFRAY_VERSION = "0.1.0"
# The Alembic head revision this code migrates the store to; tests/unit/test_versions.py
# checks it against the migrations folder, so a new migration must move it.
SCHEMA_REVISION = "0014"


@dataclass(frozen=True, slots=True)
class Versions:
    """The wfray version a process runs and the store schema revision its code expects."""

    wfray: str
    schema: str

    def __str__(self) -> str:
        return f"wfray {self.wfray} at schema {self.schema}"

    def as_dict(self) -> dict[str, str]:
        """Plain data: what an actor answers, readable by any other wfray (no wfray class)."""
        return {"wfray": self.wfray, "schema": self.schema}

    @classmethod
    def from_answer(cls, answer: object) -> Versions | None:
        """The versions in an actor's answer, or None if it is not one (a stranger)."""
        if not isinstance(answer, dict):
            return None
        wfray, schema = answer.get("wfray"), answer.get("schema")
        if not isinstance(wfray, str) or not isinstance(schema, str):
            return None
        return cls(wfray, schema)


CURRENT = Versions(WFRAY_VERSION, SCHEMA_REVISION)

UPGRADE_HINT = (
    "run `wfray upgrade` with this wfray (it drains that namespace's actors and starts "
    "them on this wfray, no run lost or repeated); or use wfray {theirs} here"
)


def check_same(mine: Versions, theirs: Versions | None, who: str, me: str) -> None:
    """Raise VersionMismatchError unless `theirs` (of the actor `who`) equals `mine`.

    Args:
        mine: the versions of the asking process.
        theirs: what the actor reported; None when it could not say (a wfray older than
            version reporting, or another program under wfray's actor name).
        who: the actor, as the message names it ("the coordinator in Ray namespace 'x'").
        me: the asking process, as the message names it ("this client").
    """
    if theirs == mine:
        return
    if theirs is None:
        raise VersionMismatchError(
            f"{who} does not report its version (a wfray older than {mine.wfray}, or not "
            f"wfray); {me} runs {mine}: {UPGRADE_HINT.format(theirs='of that release')}"
        )
    raise VersionMismatchError(
        f"{who} runs {theirs}; {me} runs {mine}: {UPGRADE_HINT.format(theirs=theirs.wfray)}"
    )
