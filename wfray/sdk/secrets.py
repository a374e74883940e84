"""Secrets by name: a run input holds `{"secret": "NINOX_API_KEY"}`, never the key itself.

The name is resolved where the step runs, from the secret sources the operator configured
on the workers, in this order:

    WFRAY_SECRET_<NAME>     a variable of the worker's environment
    <secret dir>/<NAME>     a file (trailing newline dropped) in the secret folder: the
                            `secret_dir` setting (WFRAY_SECRET_DIR), which travels to the
                            executors, else WFRAY_SECRET_DIR of the worker's environment

So a secret never passes through the coordinator and is never stored. Every value resolved
in a process is remembered there, and the step runner masks it in the attempt's log lines,
error message and traceback before they leave the worker.
"""

from __future__ import annotations

import contextvars
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# its home before every error moved to domain/errors.py; users import it from here
from wfray.domain.errors import SecretNotFoundError as SecretNotFoundError

SECRET_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"  # also a file name: no dots, no slashes
ENV_PREFIX = "WFRAY_SECRET_"
DIR_VARIABLE = "WFRAY_SECRET_DIR"

_secret_dir: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "wfray_secret_dir", default=None
)
_resolved: set[str] = set()
_resolved_lock = threading.Lock()


class SecretRef(BaseModel):
    """A reference to a secret by name, resolved on the worker (`resolve()`).

    Attributes:
        secret: the secret's name: letters, digits and underscores.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    secret: str = Field(pattern=SECRET_NAME)

    def resolve(self) -> str:
        return resolve_secret(self.secret)


def reveal(value: str | SecretRef) -> str:
    """A plain value as it is, a reference resolved."""
    return value.resolve() if isinstance(value, SecretRef) else value


def resolve_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The value of secret `name` from this worker's sources (see the module docstring).

    Raises:
        SecretNotFoundError: no source has it, or the name is not a secret name.
    """
    env = os.environ if env is None else env
    if re.fullmatch(SECRET_NAME, name) is None:
        raise SecretNotFoundError(
            f"{name!r} is not a secret name (letters, digits and underscores)"
        )
    value = env.get(ENV_PREFIX + name)
    directory = _secret_dir.get() or env.get(DIR_VARIABLE) or None
    if value is None and directory is not None:
        path = Path(directory) / name
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            value = None
        except OSError as exc:
            raise SecretNotFoundError(f"secret {name!r} cannot be read from {path}: {exc}") from exc
    if not value:
        raise SecretNotFoundError(
            f"secret {name!r} is not configured on this worker: set {ENV_PREFIX}{name} in "
            f"the workers' environment or put a file {name!r} in the secret folder "
            f"({directory or f'none: set {DIR_VARIABLE}'})"
        )
    with _resolved_lock:
        _resolved.add(value)
    return value


def resolved_values() -> frozenset[str]:
    """Every secret value resolved in this process so far (to mask them)."""
    with _resolved_lock:
        return frozenset(_resolved)


def bind_secret_dir(directory: str | None) -> contextvars.Token[str | None]:
    """Use `directory` as the secret folder of the attempt running in this context."""
    return _secret_dir.set(directory)


def unbind_secret_dir(token: contextvars.Token[str | None]) -> None:
    _secret_dir.reset(token)
