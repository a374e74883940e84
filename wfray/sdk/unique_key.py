"""A workflow's uniqueness key, computed where its input is validated (before anything is
sent or stored), and checked when the workflow is declared."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from wfray.domain.errors import DefinitionError, UniqueKeyError
from wfray.domain.uniqueness import checked_key

UniqueSpec = Callable[[Any], Any] | Sequence[str]


def check_spec(
    workflow: str, spec: UniqueSpec | None, model: type[BaseModel] | None
) -> UniqueSpec | None:
    """`spec` as declared, if usable: a callable, or a non-empty list of the input model's
    field names; DefinitionError naming the workflow and the field otherwise."""
    if spec is None or callable(spec):
        return spec
    where = f"workflow {workflow!r}, field 'unique'"
    if isinstance(spec, str) or not isinstance(spec, Sequence) or not spec:
        raise DefinitionError(
            f"{where}: expected a function of the input or a non-empty list of input field "
            f"names (e.g. [{spec!r}]), got {spec!r}"
            if isinstance(spec, str)
            else f"{where}: expected a function of the input or a non-empty list of input "
            f"field names, got {spec!r}"
        )
    if model is None:
        raise DefinitionError(f"{where}: a list of input fields needs an input model (input=...)")
    unknown = [name for name in spec if name not in model.model_fields]
    if unknown:
        raise DefinitionError(
            f"{where}: {model.__name__} has no field {', '.join(map(repr, unknown))} "
            f"(its fields: {', '.join(model.model_fields) or 'none'})"
        )
    return tuple(spec)


def compute_key(
    workflow: str, spec: UniqueSpec | None, model: type[BaseModel] | None, input_json: str
) -> str | None:
    """The uniqueness key of a validated input (JSON), or None without a `unique` spec.

    A field list gives the fields' values as a compact JSON object (`{"week":"2026-W49"}`);
    a function receives the input as the model (or plain JSON data without one).

    Raises:
        UniqueKeyError: the function raised, or its key is not a string that can be stored.
    """
    if spec is None:
        return None
    if not callable(spec):
        data = json.loads(input_json)
        values = {name: data.get(name) for name in spec}
        return checked_key(workflow, json.dumps(values, separators=(",", ":"), default=str))
    value = model.model_validate_json(input_json) if model is not None else json.loads(input_json)
    try:
        key = spec(value)
    except Exception as exc:
        raise UniqueKeyError(
            f"workflow {workflow!r}: the uniqueness key function raised {type(exc).__name__}: {exc}"
        ) from exc
    return checked_key(workflow, key)
