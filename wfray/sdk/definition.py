"""The user's API for declaring workflows: decorators over ordinary functions.

    flow = Workflow("orders", input=OrderInput)

    @flow.step(pool="io")
    def fetch(input: OrderInput) -> list[Order]: ...

    @flow.step(map="fetch")             # one task per order, in parallel
    def price(fetch: Order, ctx: StepContext) -> Priced: ...

    @flow.step()                        # depends on `price` by parameter name
    def total(price: list[Priced]) -> Decimal: ...

A parameter named after another step receives its result (a fanned-out step's results
arrive as a list in item order); `input` receives the run's input, `ctx` the StepContext.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypedDict, TypeVar, Unpack, get_origin, overload

from pydantic import BaseModel, TypeAdapter, ValidationError

from wfray.domain.errors import DefinitionError, InputValidationError, UnknownWorkflowError
from wfray.domain.policy import RetryPolicy, validate_policy
from wfray.domain.uniqueness import UniquePolicy
from wfray.domain.workflow import (
    CONTEXT,
    INPUT,
    INPUT_FIELD,
    RESULT,
    StepSchema,
    WorkflowSchema,
)
from wfray.sdk.unique_key import UniqueSpec
from wfray.sdk.unique_key import check_spec as check_unique_spec
from wfray.sdk.unique_key import compute_key as compute_unique_key

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Workflow] = {}


class StepOptions(TypedDict, total=False):
    """The keyword options of `Workflow.step` (documented there), for type checkers."""

    name: str | None
    after: Iterable[str]
    map: str | None
    pool: str
    retry: RetryPolicy | None
    timeout_s: float | None
    num_cpus: float | None
    resources: dict[str, float] | None
    input_fields: bool
    compensate: Callable[..., Any] | None
    compensation_retry: RetryPolicy | None
    heartbeat_timeout_s: float | None


def import_path(fn: Callable[..., Any]) -> str:
    """'module:qualname' of a module-level function, importable on every node."""
    module = fn.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is None:
            raise DefinitionError(
                f"step {fn.__qualname__!r} is defined in a script run by path; workers must "
                "import it: put it in a module and run it with `python -m package.module`"
            )
        module = spec.name
    if "<locals>" in fn.__qualname__:
        raise DefinitionError(
            f"step {fn.__qualname__!r} is defined inside a function; define it at module level"
        )
    return f"{module}:{fn.__qualname__}"


class _StepDef:
    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        self.fn = fn
        self.options = options


class Workflow:
    """A named workflow whose steps are declared with `@workflow.step(...)`."""

    def __init__(
        self,
        name: str,
        *,
        input: type[BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        deadline_s: float | None = None,
        events: Iterable[str] = (),
        unique: UniqueSpec | None = None,
        unique_policy: UniquePolicy | None = None,
        register: bool = True,
    ) -> None:
        """Args (beside the name, input model, default retry, deadline and events):
        unique: a uniqueness key over the input: a function of the input returning a
            string (`lambda i: f"weekly:{i.week}"`) or a list of input field names.
            Computed where the input is validated, before anything is sent.
        unique_policy: what a second submission with the same key gets (UniquePolicy;
            the default answers with the active run and starts a new one after it
            finished). Only with `unique`.
        """
        self.name = name
        self.input_model = input
        self.unique = check_unique_spec(name, unique, input)
        if unique_policy is not None and unique is None:
            raise DefinitionError(f"workflow {name!r}: unique_policy needs a key (unique=...)")
        if unique_policy is not None and not isinstance(unique_policy, UniquePolicy):
            raise DefinitionError(
                f"workflow {name!r}, field 'unique_policy': expected a wfray.UniquePolicy, "
                f"got {unique_policy!r}"
            )
        self.unique_policy = (unique_policy or UniquePolicy()) if unique is not None else None
        self.deadline_s = deadline_s
        self.events = tuple(events)
        self.default_retry = None if retry is None else validate_policy(f"{name} (default)", retry)
        self._steps: dict[str, _StepDef] = {}
        self._schema: WorkflowSchema | None = None
        if register:
            _registry[name] = self

    @overload
    def step(self, fn: F, /) -> F: ...

    @overload
    def step(self, fn: None = None, /, **options: Unpack[StepOptions]) -> Callable[[F], F]: ...

    def step(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        after: Iterable[str] = (),
        map: str | None = None,
        pool: str = "cpu",
        retry: RetryPolicy | None = None,
        timeout_s: float | None = None,
        num_cpus: float | None = None,
        resources: dict[str, float] | None = None,
        input_fields: bool = False,
        compensate: Callable[..., Any] | None = None,
        compensation_retry: RetryPolicy | None = None,
        heartbeat_timeout_s: float | None = None,
    ) -> Any:
        """Declare a step. Usable as `@flow.step` or `@flow.step(pool="io", ...)`.

        Args:
            name: the step's name (default: the function's name).
            after: steps to wait for besides those named by parameters.
            map: a step whose list result is fanned out: one task per item.
            pool: "cpu" (Ray tasks, one CPU each), "io" (coroutines in io executors).
            retry: its RetryPolicy (default: the workflow's `retry`, else the global default:
                3 attempts with exponential backoff). A submission may override it.
            timeout_s: per-attempt timeout.
            num_cpus: CPUs one attempt holds in the cpu pool.
            resources: extra Ray resources one attempt holds.
            input_fields: bind each parameter to the input field of the same name.
            compensate: a module-level function that undoes this step when its run fails
                for good; its parameters may be `result` (this step's result), `input`
                and `ctx`.
            compensation_retry: the compensation's retry policy (default: the step's).
            heartbeat_timeout_s: the step must call `ctx.heartbeat()` at least this often;
                an attempt silent for longer is treated as lost and retried.
        """

        declared = {
            "after": tuple(after),
            "map": map,
            "pool": pool,
            "retry": retry,
            "timeout_s": timeout_s,
            "num_cpus": num_cpus,
            "resources": dict(resources or {}),
            "input_fields": input_fields,
            "compensate": compensate,
            "compensation_retry": compensation_retry,
            "heartbeat_timeout_s": heartbeat_timeout_s,
        }

        def decorate(func: F) -> F:
            self._add_step(name or func.__name__, func, declared)
            return func

        return decorate(fn) if fn is not None else decorate

    def _add_step(self, step_name: str, func: Callable[..., Any], declared: dict[str, Any]) -> None:
        """Check a step's declaration and add it (DefinitionError naming what is wrong)."""
        if step_name in self._steps:
            raise DefinitionError(f"workflow {self.name!r}: duplicate step {step_name!r}")
        where = f"workflow {self.name!r}, step {step_name!r}"
        compensate = declared["compensate"]
        if compensate is not None and not (
            inspect.isfunction(compensate) and "<locals>" not in compensate.__qualname__
        ):
            raise DefinitionError(
                f"{where}: compensate must be a module-level function, got {compensate!r}"
            )
        retry, compensation_retry = declared["retry"], declared["compensation_retry"]
        options = {
            **declared,
            "resources": dict(declared["resources"]),  # a copy per step the decorator makes
            "retry": None if retry is None else validate_policy(step_name, retry),
            "compensation_bindings": _compensation_bindings(where, compensate),
            "compensation_retry": None
            if compensation_retry is None
            else validate_policy(step_name, compensation_retry),
        }
        self._steps[step_name] = _StepDef(func, options)
        self._schema = None

    @property
    def schema(self) -> WorkflowSchema:
        """The validated, versioned schema (built on first use)."""
        if self._schema is None:
            self._schema = self._build()
        return self._schema

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {name: d.fn for name, d in self._steps.items()}

    def _build(self) -> WorkflowSchema:
        names = set(self._steps)
        steps = []
        for step_name, definition in self._steps.items():
            opts = definition.options
            bindings = _bindings(self.name, step_name, definition.fn, names, opts["input_fields"])
            after = list(opts["after"])
            for source in [opts["map"], *bindings.values()]:
                if source is not None and source in names and source not in after:
                    after.append(source)
            steps.append(
                StepSchema(
                    name=step_name,
                    fn=import_path(definition.fn),
                    after=tuple(after),
                    map=opts["map"],
                    bindings=bindings,
                    pool=opts["pool"],
                    retry=opts["retry"],
                    timeout_s=opts["timeout_s"],
                    num_cpus=opts["num_cpus"],
                    resources=opts["resources"],
                    heartbeat_timeout_s=opts["heartbeat_timeout_s"],
                    **_compensation(self.name, step_name, opts),
                )
            )
        _check_map_sources(self.name, self._steps)
        input_type = None
        if self.input_model is not None:
            input_type = f"{self.input_model.__module__}:{self.input_model.__qualname__}"
        return WorkflowSchema.build(
            self.name,
            steps,
            input_type=input_type,
            default_retry=self.default_retry,
            deadline_s=self.deadline_s,
            events=self.events,
            unique=self.unique_policy,
        )

    def unique_key(self, input_json: str) -> str | None:
        """The uniqueness key of a validated input (None without `unique`); UniqueKeyError
        when it cannot be computed or stored."""
        return compute_unique_key(self.name, self.unique, self.input_model, input_json)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={list(self._steps)})"


def _bindings(
    workflow: str, step: str, fn: Callable[..., Any], names: set[str], input_fields: bool
) -> dict[str, str]:
    bindings: dict[str, str] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name == CONTEXT:
            bindings[param.name] = CONTEXT
        elif input_fields:
            bindings[param.name] = INPUT_FIELD + param.name
        elif param.name == INPUT:
            bindings[param.name] = INPUT
        elif param.name in names and param.name != step:
            bindings[param.name] = param.name
        elif param.default is inspect.Parameter.empty:
            raise DefinitionError(
                f"workflow {workflow!r}, step {step!r}: parameter {param.name!r} is neither "
                f"a step name ({', '.join(sorted(names))}), 'input' nor 'ctx'"
            )
    return bindings


def _compensation_bindings(where: str, undo: Callable[..., Any] | None) -> dict[str, str]:
    bindings: dict[str, str] = {}
    if undo is None:
        return bindings
    for param in inspect.signature(undo).parameters.values():
        if param.name in (RESULT, INPUT, CONTEXT):
            bindings[param.name] = param.name
        elif param.default is inspect.Parameter.empty:
            raise DefinitionError(
                f"{where}: compensation parameter {param.name!r} must be 'result', 'input' or 'ctx'"
            )
    return bindings


def _compensation(workflow: str, step: str, opts: dict[str, Any]) -> dict[str, Any]:
    undo = opts["compensate"]
    if undo is None:
        return {}
    return {
        "compensation": import_path(undo),
        "compensation_bindings": opts["compensation_bindings"],
        "compensation_retry": opts["compensation_retry"],
    }


def _check_map_sources(workflow: str, steps: dict[str, _StepDef]) -> None:
    """A map over a step whose return annotation is known and is not a list is an error."""
    for name, definition in steps.items():
        source = definition.options["map"]
        if source is None or source not in steps:
            continue
        try:
            # resolves string annotations too (`from __future__ import annotations`)
            annotation = typing.get_type_hints(steps[source].fn).get("return")
        except Exception:  # an unresolvable forward reference: left to run time
            continue
        if annotation is None:
            continue
        origin = get_origin(annotation) or annotation
        if inspect.isclass(origin) and not issubclass(origin, (list, tuple)):
            raise DefinitionError(
                f"workflow {workflow!r}, step {name!r}: maps over {source!r}, which returns "
                f"{getattr(annotation, '__name__', annotation)}, not a list"
            )


def registered(name: str) -> Workflow | None:
    """A workflow declared in this process, by name."""
    return _registry.get(name)


WorkflowRef = Workflow | str | Callable[..., Any]


def resolve_workflow(ref: WorkflowRef) -> Workflow:
    """A Workflow, a declared workflow's name, or a @wfray.task function, as a Workflow."""
    if isinstance(ref, Workflow):
        return ref
    if isinstance(ref, str):
        found = registered(ref)
        if found is None:
            raise UnknownWorkflowError(
                f"unknown workflow {ref!r}: import the module that declares it"
            )
        return found
    flow = getattr(ref, "__wfray_workflow__", None)
    if not isinstance(flow, Workflow):
        raise UnknownWorkflowError(f"{ref!r} is not a workflow or a @wfray.task function")
    return flow


def subscribers(event: str) -> list[Workflow]:
    """The workflows declared in this process that an event starts."""
    return [flow for flow in _registry.values() if event in flow.events]


def encode_input(flow: Workflow, value: Any) -> str:
    """Validate a run input against the workflow's model and encode it as JSON."""
    model = flow.input_model
    try:
        if model is None:
            return TypeAdapter(Any).dump_json(value).decode()
        if isinstance(value, BaseModel) and not isinstance(value, model):
            value = value.model_dump()
        validated = value if isinstance(value, model) else model.model_validate(value or {})
        return validated.model_dump_json()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InputValidationError(
            f"input of workflow {flow.name!r} does not match {model.__name__ if model else 'Any'}: "
            f"{problems}"
        ) from exc
    except Exception as exc:
        raise InputValidationError(
            f"input of workflow {flow.name!r} cannot be serialised to JSON: {exc}"
        ) from exc
