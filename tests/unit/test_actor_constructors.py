"""Actors do no Ray calls in their constructors.

An error raised in an actor's constructor fails its creation for good, and a GCS call there
holds up every creation and restart; so what an actor needs of Ray it is handed by the
factory (adapters/ray/actors.py) or asks for in its first call. The check finds every class
wfray hands to `ray.remote` or to the Serve deployment factory, and reads the constructors
along its bases, with the wfray functions and constructors they call, for any use of Ray.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# the calls that make an actor (or a Serve replica, an actor too) of the class they are given
ACTOR_FACTORIES = {("ray", "remote"), ("", "api_deployment")}


def _factory_of(call: ast.Call) -> tuple[str, str] | None:
    func = call.func
    if isinstance(func, ast.Name):
        return "", func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id, func.attr
    return None


def actor_classes(root: Path = REPO_ROOT) -> dict[str, type]:
    """Every class a wfray module hands to an actor factory, by its qualified name."""
    found: dict[str, type] = {}
    for path in sorted((root / "wfray").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [
            call.args[0].id
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and _factory_of(call) in ACTOR_FACTORIES
            and call.args
            and isinstance(call.args[0], ast.Name)
        ]
        if not names:
            continue
        module = importlib.import_module(".".join(path.relative_to(root).with_suffix("").parts))
        for name in names:
            made = getattr(module, name)
            if isinstance(made, type):
                found[f"{made.__module__}.{made.__qualname__}"] = made
    return found


def _is_ray(value: Any) -> bool:
    name = (
        value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", "")
    )
    return isinstance(name, str) and (name == "ray" or name.startswith("ray."))


def _is_wfray(value: Any) -> bool:
    return str(getattr(value, "__module__", "")).startswith("wfray.")


Code = tuple[Callable[..., Any], type | None]  # a wfray function, and the class it is a method of


def _called(value: Any, owner: type | None = None) -> Code | None:
    """The wfray code a call of `value` runs: the function itself (a method of `owner`, if
    reached through `self`), or a class's constructor."""
    if isinstance(value, type):
        init = value.__dict__.get("__init__")
        return (init, value) if init is not None and _is_wfray(init) else None
    return (value, owner) if inspect.isfunction(value) and _is_wfray(value) else None


def _callee(call: ast.Call, scope: dict[str, Any], owner: type | None) -> Code | None:
    func = call.func
    if isinstance(func, ast.Name):
        return _called(scope.get(func.id))
    if (
        owner is not None
        and isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id == "self"
    ):
        return _called(getattr(owner, func.attr, None), owner)
    return None


def _imports_ray(node: ast.Import | ast.ImportFrom) -> bool:
    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
    return any(m is not None and (m == "ray" or m.startswith("ray.")) for m in modules)


def ray_uses(function: Callable[..., Any], owner: type | None, seen: set[Any]) -> Iterator[str]:
    """Where `function` (a method of `owner`, if one), or wfray code it calls, uses Ray."""
    if function in seen:
        return
    seen.add(function)
    where = f"{function.__module__}.{function.__qualname__}"
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    scope = function.__globals__
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and _imports_ray(node):
            yield f"{where}: imports Ray"
        elif isinstance(node, ast.Name) and _is_ray(scope.get(node.id)):
            yield f"{where}: uses {node.id}"
        elif isinstance(node, ast.Call) and (code := _callee(node, scope, owner)):
            yield from ray_uses(*code, seen)


def constructor_ray_uses(cls: type) -> list[str]:
    """Every use of Ray by the constructors of `cls` and of its wfray bases."""
    seen: set[Any] = set()
    found: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None and _is_wfray(klass):
            found += ray_uses(init, cls, seen)
    return found


def test_the_actor_classes_are_found() -> None:
    found = {name.rpartition(".")[2] for name in actor_classes()}
    # the coordinator, the executors, the io env runner, the HTTP API's replica
    assert {"CoordinatorActor", "CpuExecutor", "IoExecutor", "IoEnvRunner", "WfrayApi"} <= found


def test_no_actor_constructor_calls_ray() -> None:
    uses = {name: constructor_ray_uses(cls) for name, cls in actor_classes().items()}
    assert {name: found for name, found in uses.items() if found} == {}


# -- the check itself --------------------------------------------------------------------------


def _restarted_by_ray() -> bool:
    import ray

    return bool(ray.get_runtime_context().was_current_actor_reconstructed)


class _Base:
    def __init__(self) -> None:
        self.restarted = self._ask()

    def _ask(self) -> bool:
        return _restarted_by_ray()


class _Actor(_Base):
    def __init__(self, settings: object) -> None:
        super().__init__()
        self.settings = settings


class _Patient:
    def __init__(self, restarted: Callable[[], bool] = _restarted_by_ray) -> None:
        self.restarted = restarted  # handed in, asked later: no Ray call here


def test_the_check_finds_ray_in_a_base_constructor_through_methods_and_functions(
    monkeypatch: Any,
) -> None:
    # the helpers here count as wfray code, as the check follows wfray's calls only
    monkeypatch.setattr(_Base, "__module__", "wfray.fake")
    monkeypatch.setattr(_Actor, "__module__", "wfray.fake")
    monkeypatch.setattr(_Patient, "__module__", "wfray.fake")
    for function in (_Base.__init__, _Base._ask, _Actor.__init__, _Patient.__init__):
        monkeypatch.setattr(function, "__module__", "wfray.fake")
    monkeypatch.setattr(_restarted_by_ray, "__module__", "wfray.fake")

    found = constructor_ray_uses(_Actor)
    assert found == [f"wfray.fake.{_restarted_by_ray.__qualname__}: imports Ray"]
    assert constructor_ray_uses(_Patient) == []
