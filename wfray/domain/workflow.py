"""Workflow schemas: named, versioned DAGs of steps, serialisable and validated.

A schema knows steps by name and their code by import path only ("module:qualname"), so it
can be stored, compared and shown without importing user code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from wfray.domain.errors import CycleError, DefinitionError
from wfray.domain.policy import RetryPolicy
from wfray.domain.uniqueness import UniquePolicy

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
INPUT = "input"  # the binding source for the run's input
CONTEXT = "ctx"  # the binding source for the step context
INPUT_FIELD = "input:"  # prefix: the binding source for one field of the run's input
RESULT = "result"  # in a compensation: the binding source for the compensated step's result


class StepSchema(BaseModel):
    """One step of a workflow.

    Attributes:
        name: unique within the workflow.
        fn: import path of the callable, "package.module:qualname".
        after: names of the steps this one waits for.
        map: a dependency whose result (a list) is fanned out, one task per item.
        bindings: parameter name -> source (a step name, "input" or "ctx").
        pool: the resource pool it runs in ("cpu", "io" or a custom one).
        retry: its retry policy (None: the workflow's default, then the global default).
        timeout_s: per-attempt timeout, None for none.
        num_cpus: CPUs one attempt holds (cpu pool), None for the pool default.
        resources: extra Ray resources one attempt holds.
        compensation: import path of the compensating callable, if any.
        compensation_bindings: its parameter name -> source ("result", "input" or "ctx").
        compensation_retry: the compensation's retry policy (None: the step's).
        heartbeat_timeout_s: an attempt silent for longer (no `ctx.heartbeat`) is lost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    fn: str
    after: tuple[str, ...] = ()
    map: str | None = None
    bindings: dict[str, str] = Field(default_factory=dict)
    pool: str = "cpu"
    retry: RetryPolicy | None = None
    timeout_s: float | None = None
    num_cpus: float | None = None
    resources: dict[str, float] = Field(default_factory=dict)
    compensation: str | None = None
    compensation_bindings: dict[str, str] = Field(default_factory=dict)
    compensation_retry: RetryPolicy | None = None
    heartbeat_timeout_s: float | None = None


class WorkflowSchema(BaseModel):
    """A workflow: a validated DAG of steps. Build it with `WorkflowSchema.build`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    steps: tuple[StepSchema, ...]
    input_type: str | None = None
    default_retry: RetryPolicy | None = None
    deadline_s: float | None = None
    events: tuple[str, ...] = ()  # event names that start a run of this workflow
    # With a uniqueness key (declared in code, computed where the input is validated):
    # what a second submission with the same key gets.
    unique: UniquePolicy | None = None
    version: str = ""
    _by_name: dict[str, StepSchema] | None = PrivateAttr(default=None)
    _downstream: dict[str, tuple[str, ...]] | None = PrivateAttr(default=None)

    @classmethod
    def build(
        cls,
        name: str,
        steps: Iterable[StepSchema],
        input_type: str | None = None,
        default_retry: RetryPolicy | None = None,
        deadline_s: float | None = None,
        events: Iterable[str] = (),
        unique: UniquePolicy | None = None,
    ) -> WorkflowSchema:
        """Validate the DAG and stamp the schema with its content-hash version."""
        steps = tuple(steps)
        validate_dag(name, steps)
        if deadline_s is not None and deadline_s <= 0:
            raise DefinitionError(
                f"workflow {name!r}: deadline_s must be positive, got {deadline_s}"
            )
        events = tuple(events)
        for event in events:
            if not isinstance(event, str) or not event.strip():
                raise DefinitionError(
                    f"workflow {name!r}: events must be non-empty names, got {event!r}"
                )
        for step in steps:
            if step.heartbeat_timeout_s is not None and step.heartbeat_timeout_s <= 0:
                raise DefinitionError(
                    f"workflow {name!r}, step {step.name!r}: heartbeat_timeout_s must be "
                    f"positive, got {step.heartbeat_timeout_s}"
                )
        draft = cls(
            name=name,
            steps=steps,
            input_type=input_type,
            default_retry=default_retry,
            deadline_s=deadline_s,
            events=events,
            unique=unique,
        )
        return draft.model_copy(update={"version": content_version(draft)})

    def retry_for(
        self, step: str, override: RetryPolicy | None, fallback: RetryPolicy
    ) -> RetryPolicy:
        """The policy that governs a step, highest precedence first: the run's override,
        the step's own policy, the workflow's default, the global default."""
        return override or self.step(step).retry or self.default_retry or fallback

    def step(self, name: str) -> StepSchema:
        # Read from pydantic's private dict itself: through `self._by_name` a call cost
        # 4.6 us (pydantic probes the attribute for a descriptor), now 0.4; the engine looks
        # steps up on every event.
        private = self.__pydantic_private__ or {}
        by_name: dict[str, StepSchema] | None = private.get("_by_name")
        if by_name is None:  # built once
            by_name = self._by_name = {step.name: step for step in self.steps}
        found = by_name.get(name)
        if found is None:
            raise DefinitionError(f"workflow {self.name!r} has no step {name!r}")
        return found

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps)

    def downstream(self) -> dict[str, tuple[str, ...]]:
        """Step name -> the steps that depend on it, in definition order. Built once and
        shared by every run of the workflow: read it, never change it."""
        private = self.__pydantic_private__ or {}
        found: dict[str, tuple[str, ...]] | None = private.get("_downstream")
        if found is None:
            found = self._downstream = self._children()
        return found

    def _children(self) -> dict[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {step.name: [] for step in self.steps}
        for step in self.steps:
            for parent in step.after:
                children[parent].append(step.name)
        return {name: tuple(kids) for name, kids in children.items()}

    def sinks(self) -> tuple[str, ...]:
        """The steps nothing depends on: their results make the run's result."""
        return tuple(name for name, kids in self.downstream().items() if not kids)

    def to_json(self) -> str:
        return self.model_dump_json()


def content_version(schema: WorkflowSchema) -> str:
    """A short, stable hash of everything but the version itself."""
    # without a uniqueness policy, the hash stays what it was before policies existed
    exclude = {"version"} if schema.unique is not None else {"version", "unique"}
    body = schema.model_dump(mode="json", exclude=exclude)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def validate_dag(workflow: str, steps: tuple[StepSchema, ...]) -> None:
    """Raise DefinitionError (or CycleError) naming what is wrong."""
    if not NAME_PATTERN.match(workflow):
        raise DefinitionError(
            f"workflow name {workflow!r} is invalid: use letters, digits, '_', '-', '.'"
        )
    if not steps:
        raise DefinitionError(f"workflow {workflow!r} has no steps")
    seen: set[str] = set()
    for step in steps:
        if not NAME_PATTERN.match(step.name) or step.name in (INPUT, CONTEXT):
            raise DefinitionError(f"workflow {workflow!r}: step name {step.name!r} is invalid")
        if step.name in seen:
            raise DefinitionError(f"workflow {workflow!r}: duplicate step {step.name!r}")
        seen.add(step.name)
    for step in steps:
        _validate_edges(workflow, step, seen)
    cycle = find_cycle({step.name: step.after for step in steps})
    if cycle:
        raise CycleError(f"workflow {workflow!r} has a cycle: {' -> '.join(cycle)}")


def _validate_edges(workflow: str, step: StepSchema, names: set[str]) -> None:
    where = f"workflow {workflow!r}, step {step.name!r}"
    for parent in step.after:
        if parent not in names:
            known = ", ".join(sorted(names))
            raise DefinitionError(f"{where}: unknown dependency {parent!r} (steps: {known})")
    if step.map is not None and step.map not in step.after:
        raise DefinitionError(f"{where}: map source {step.map!r} must be one of its dependencies")
    for param, source in step.bindings.items():
        if source.startswith(INPUT_FIELD):
            continue
        if source not in (INPUT, CONTEXT) and source not in step.after:
            raise DefinitionError(
                f"{where}: parameter {param!r} is bound to {source!r}, which is not a dependency"
            )
    for param, source in step.compensation_bindings.items():
        if source not in (RESULT, INPUT, CONTEXT):
            raise DefinitionError(
                f"{where}: compensation parameter {param!r} must be 'result', 'input' or 'ctx'"
            )
    if step.timeout_s is not None and step.timeout_s <= 0:
        raise DefinitionError(f"{where}: timeout_s must be positive, got {step.timeout_s}")
    if step.num_cpus is not None and step.num_cpus < 0:
        raise DefinitionError(f"{where}: num_cpus must not be negative, got {step.num_cpus}")


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as a path that ends where it starts, or None.

    Iterative depth-first search, so a chain of thousands of steps cannot exhaust the stack.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(edges, white)
    for root in edges:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        pending: list[Iterator[str]] = [iter(edges.get(root, ()))]
        colour[root] = grey
        while pending:
            parent = next(pending[-1], None)
            if parent is None:
                colour[path.pop()] = black
                pending.pop()
                continue
            state = colour.get(parent)
            if state == grey:
                cycle = [*path[path.index(parent) :], parent]
                # edges point to dependencies; report the path in execution order
                return list(reversed(cycle))
            if state == white:
                colour[parent] = grey
                path.append(parent)
                pending.append(iter(edges.get(parent, ())))
    return None


def topological_order(schema: WorkflowSchema) -> list[str]:
    """Steps in an order where every step follows its dependencies."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(schema.steps)
    while pending:
        rest = []
        for step in pending:
            if all(parent in done for parent in step.after):
                order.append(step.name)
                done.add(step.name)
            else:
                rest.append(step)
        pending = rest
    return order
