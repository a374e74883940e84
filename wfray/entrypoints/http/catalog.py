"""What the HTTP API may start: the user's own workflows, and the built-in tasks the operator
lists in WFRAY_API_TASKS (none by default).

The built-in tasks (`http_request`, `send_email`, `render_pdf`) act on the cluster's behalf:
they reach networks, mail servers and credentials the caller cannot. So a name arriving over
HTTP resolves only against this catalog, never against every workflow this process happens
to have imported: a built-in imported into a user's module (`from wfray.integrations import
send_email`) is still a built-in, and stays closed unless listed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

from wfray.config import Settings
from wfray.domain.errors import DefinitionError, UnknownWorkflowError, WorkflowNotStartableError
from wfray.sdk.definition import Workflow

# Code in these packages is wfray's own: anything declared there is a built-in.
_BUILTIN_PACKAGES = ("wfray.",)


def builtin_tasks() -> dict[str, Workflow]:
    """The built-in tasks by name."""
    from wfray.integrations import BUILTIN_TASKS

    return {
        fn.__wfray_workflow__.name: fn.__wfray_workflow__  # type: ignore[attr-defined]
        for fn in BUILTIN_TASKS
    }


def is_builtin(flow: Workflow) -> bool:
    """True when any step of `flow` runs wfray's own code (a built-in task, or one like it)."""
    return any(step.fn.startswith(_BUILTIN_PACKAGES) for step in flow.schema.steps)


def api_workflows(settings: Settings) -> dict[str, Workflow]:
    """The workflows the API starts by name: those of `settings.modules` that are the user's
    own, then the built-in tasks named in `settings.api_tasks`.

    Raises:
        DefinitionError: a module cannot be imported, or `api_tasks` names no built-in task.
    """
    builtins = check_api_tasks(settings.api_tasks)
    found = {
        name: flow
        for name, flow in import_workflows(settings.modules).items()
        if not is_builtin(flow)
    }
    found.update({name: builtins[name] for name in settings.api_tasks})
    return found


def check_api_tasks(names: Iterable[str]) -> dict[str, Workflow]:
    """The built-in tasks by name, once every name in `names` is one of them."""
    builtins = builtin_tasks()
    unknown = sorted(set(names) - set(builtins))
    if unknown:
        raise DefinitionError(
            f"WFRAY_API_TASKS names {', '.join(map(repr, unknown))}, which are not built-in "
            f"tasks (built-in: {', '.join(sorted(builtins))}); the user's own workflows are "
            "started over HTTP through WFRAY_MODULES"
        )
    return builtins


def startable(flows: Mapping[str, Workflow], name: str) -> Workflow:
    """The workflow `name` if the API may start it; a 403 for a closed built-in, else 404."""
    flow = flows.get(name)
    if flow is not None:
        return flow
    if name in builtin_tasks():
        raise WorkflowNotStartableError(
            f"the built-in task {name!r} is not startable over this API: the operator "
            "opens built-in tasks one by one in WFRAY_API_TASKS"
        )
    raise UnknownWorkflowError(
        f"unknown workflow {name!r}: this API starts the workflows of WFRAY_MODULES "
        "and the built-in tasks listed in WFRAY_API_TASKS"
    )


def import_workflows(modules: Iterable[str]) -> dict[str, Workflow]:
    """Import the user's modules; their workflows and @task functions, by name."""
    found: dict[str, Workflow] = {}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise DefinitionError(
                f"WFRAY_MODULES names {name!r}, which cannot be imported here: {exc}"
            ) from exc
        for value in vars(module).values():
            flow = value if isinstance(value, Workflow) else _task_workflow(value)
            if flow is not None:
                found[flow.name] = flow
    return found


def _task_workflow(value: object) -> Workflow | None:
    if not callable(value) or isinstance(value, type):
        return None
    flow = getattr(value, "__wfray_workflow__", None)
    return flow if isinstance(flow, Workflow) else None
