"""The code a run needs: the Ray runtime environment recorded with it.

A run records what Ray needs to build the environment its steps import from: the
content-addressed packages of its `working_dir` and `py_modules` (`gcs://_ray_pkg_<hash>.zip`,
uploaded by Ray or by the client), its `pip`/`uv` requirements, and the *names* of the
environment variables its job set. Values of environment variables are never recorded:
they are often secrets, and a run's record is read by operators.

The environment is stored once per distinct content (`CodeEnv.hash`), and the run refers to
it by that hash, which is also the code's identity in the workflow version shown.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wfray.domain.errors import InputValidationError

# What a runtime env may hold when given explicitly. `excludes` only shapes an upload and
# is not recorded; anything else (conda, containers, setup hooks) is refused by name.
KNOWN_KEYS = frozenset({"working_dir", "py_modules", "pip", "uv", "env_vars", "excludes", "config"})
MAX_ENV_JSON = 64 * 1024
MAX_ENTRIES = 256  # py_modules, pip/uv packages, env var names, excludes
MAX_ENTRY_CHARS = 1024
MAX_SETUP_TIMEOUT_S = 3600
ENV_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}\Z")
URI = re.compile(r"[a-z][a-z0-9+.-]*://[^\x00\s]+\Z")
HASH = re.compile(r"[0-9a-f]{64}\Z")
GCS_SCHEME = "gcs://"
PACKAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}\Z")


def refuse(field: str, why: str) -> InputValidationError:
    return InputValidationError(f"runtime_env: {field}: {why}")


@dataclass(frozen=True, slots=True)
class CodeEnv:
    """A run's recorded runtime environment (package URIs, requirements, variable names).

    Attributes:
        working_dir: the URI of the working directory's package, if any.
        py_modules: the URIs of extra module packages.
        pip, uv: the requirements as Ray takes them (a list of specifiers, or a dict with
            `packages` and options), or None.
        env_var_names: the names of the variables the job set, sorted; never their values.
        setup_timeout_s: how long Ray may take to build it (its `config`), if given.
    """

    working_dir: str | None = None
    py_modules: tuple[str, ...] = ()
    pip: Any = None
    uv: Any = None
    env_var_names: tuple[str, ...] = ()
    setup_timeout_s: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The recorded form: only the fields that are set."""
        recorded: dict[str, Any] = {}
        if self.working_dir is not None:
            recorded["working_dir"] = self.working_dir
        if self.py_modules:
            recorded["py_modules"] = list(self.py_modules)
        if self.pip is not None:
            recorded["pip"] = self.pip
        if self.uv is not None:
            recorded["uv"] = self.uv
        if self.env_var_names:
            recorded["env_var_names"] = list(self.env_var_names)
        if self.setup_timeout_s is not None:
            recorded["setup_timeout_s"] = self.setup_timeout_s
        return recorded

    def to_json(self) -> str:
        """Canonical JSON: the same environment always gives the same text (and hash)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @property
    def packages(self) -> tuple[str, ...]:
        """The packages Ray keeps in its GCS for this env (`gcs://` URIs), which Ray deletes
        some time after the job that uploaded them ends: wfray keeps a copy of each."""
        return gcs_packages(self.ray_options())

    @property
    def builds_anything(self) -> bool:
        """Whether Ray has something to build (names of variables alone change no code)."""
        return bool(self.working_dir or self.py_modules or self.pip or self.uv)

    def ray_options(self) -> dict[str, Any]:
        """The `runtime_env` Ray is given for this run's attempts ({} if nothing to build).
        Variables are not passed: their values were never recorded (set them on the nodes,
        or use wfray's secrets)."""
        if not self.builds_anything:
            return {}
        options: dict[str, Any] = {}
        if self.working_dir is not None:
            options["working_dir"] = self.working_dir
        if self.py_modules:
            options["py_modules"] = list(self.py_modules)
        if self.pip is not None:
            options["pip"] = self.pip
        if self.uv is not None:
            options["uv"] = self.uv
        if self.setup_timeout_s is not None:
            options["config"] = {"setup_timeout_seconds": self.setup_timeout_s}
        return options

    @classmethod
    def from_json(cls, text: str) -> CodeEnv:
        """The environment stored as `to_json` wrote it (checked again: stores are input)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise refuse("stored", "expected a JSON object")
        raw: dict[str, Any] = {k: v for k, v in data.items() if k in KNOWN_KEYS}
        names = data.get("env_var_names") or []
        if names:
            raw["env_vars"] = dict.fromkeys(names, "")
        if data.get("setup_timeout_s") is not None:
            raw["config"] = {"setup_timeout_seconds": data["setup_timeout_s"]}
        return recorded_env(raw, require_uris=True)


def gcs_packages(ray_options: Mapping[str, Any]) -> tuple[str, ...]:
    """The `gcs://` package URIs a runtime env (as Ray takes it) names, in order."""
    named = [ray_options.get("working_dir"), *(ray_options.get("py_modules") or [])]
    return tuple(uri for uri in named if isinstance(uri, str) and uri.startswith(GCS_SCHEME))


def package_name(uri: str) -> str:
    """The name a `gcs://` package is kept under (`_ray_pkg_<hash>.zip`, a wheel's file
    name): one plain file name, refused otherwise (InputValidationError)."""
    name = uri[len(GCS_SCHEME) :] if uri.startswith(GCS_SCHEME) else ""
    if not PACKAGE_NAME.match(name) or name.strip(".") == "":
        raise refuse("package", f"not a gcs:// package URI of one file name: {uri[:200]!r}")
    return name


def short_hash(env_hash: str | None) -> str | None:
    """How an environment is named where space is short (versions, tables)."""
    return None if env_hash is None else env_hash[:12]


def shown_version(version: str, env_hash: str | None) -> str:
    """The workflow version as shown: the DAG's shape, and the code's identity if recorded."""
    short = short_hash(env_hash)
    return version if short is None else f"{version}+{short}"


def check_env_hash(env_hash: str | None) -> str | None:
    """An env hash that came over the wire: 64 lowercase hex digits, or None."""
    if env_hash is not None and (not isinstance(env_hash, str) or not HASH.match(env_hash)):
        raise refuse("env_hash", "expected 64 lowercase hexadecimal digits")
    return env_hash


def recorded_env(raw: Mapping[str, Any] | None, *, require_uris: bool = True) -> CodeEnv:
    """What is recorded of a runtime env as Ray holds it (the job's, or one given and
    uploaded): package URIs, requirements and variable names kept, values dropped.

    Raises InputValidationError naming the field, for unknown keys, local paths where URIs
    are needed (`require_uris`), oversized or malformed values.
    """
    raw = dict(raw or {})
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise refuse(
            ", ".join(map(str, unknown))[:200],
            f"not supported (known keys: {', '.join(sorted(KNOWN_KEYS))})",
        )
    env = CodeEnv(
        working_dir=_working_dir(raw.get("working_dir"), require_uris),
        py_modules=_py_modules(raw.get("py_modules"), require_uris),
        pip=_requirements("pip", raw.get("pip")),
        uv=_requirements("uv", raw.get("uv")),
        env_var_names=_env_var_names(raw.get("env_vars")),
        setup_timeout_s=_setup_timeout(raw.get("config")),
    )
    _strings("excludes", raw.get("excludes"))
    if len(env.to_json()) > MAX_ENV_JSON:
        raise refuse("runtime_env", f"more than {MAX_ENV_JSON} characters recorded")
    return env


def job_env(raw: Mapping[str, Any] | None) -> CodeEnv | None:
    """What a job's own runtime env records (None if it holds nothing to record). Keys
    wfray does not carry (conda, containers, Ray's internals) are left out, not refused:
    the job chose them, not the caller of `submit`."""
    kept = {k: v for k, v in dict(raw or {}).items() if k in KNOWN_KEYS}
    config = kept.get("config")
    if isinstance(config, Mapping):
        timeout = config.get("setup_timeout_seconds")
        kept["config"] = {} if timeout in (None, -1) else {"setup_timeout_seconds": timeout}
    else:
        kept.pop("config", None)
    env = recorded_env(kept, require_uris=True)
    return env if env.as_dict() else None


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise refuse(field, f"expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise refuse(field, "contains a NUL byte")
    if not value.strip():
        raise refuse(field, "is empty")
    if len(value) > MAX_ENTRY_CHARS:
        raise refuse(field, f"longer than {MAX_ENTRY_CHARS} characters")
    return value


def _uri(field: str, value: Any, require_uris: bool) -> str:
    text = _text(field, value)
    if require_uris and not URI.match(text):
        raise refuse(
            field, f"expected a package URI such as gcs://_ray_pkg_<hash>.zip, got {text!r}"
        )
    return text


def _working_dir(value: Any, require_uris: bool) -> str | None:
    return None if value is None else _uri("working_dir", value, require_uris)


def _py_modules(value: Any, require_uris: bool) -> tuple[str, ...]:
    modules = _strings("py_modules", value)
    return tuple(_uri(f"py_modules[{i}]", m, require_uris) for i, m in enumerate(modules))


def _strings(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise refuse(field, f"expected a list, got {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise refuse(field, f"more than {MAX_ENTRIES} entries")
    return [_text(f"{field}[{i}]", v) for i, v in enumerate(value)]


def _requirements(field: str, value: Any) -> Any:
    """pip/uv as Ray takes them: a list of specifiers, or {"packages": [...], options}."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return _strings(field, value)
    if isinstance(value, Mapping):
        packages = _strings(f"{field}.packages", value.get("packages"))
        kept: dict[str, Any] = {"packages": packages}
        for key, option in value.items():
            if key == "packages":
                continue
            if not isinstance(key, str) or not isinstance(option, str | bool | int | list):
                raise refuse(f"{field}.{str(key)[:50]}", "expected a string, boolean or list")
            kept[_text(f"{field} option", key)] = option
        if len(json.dumps(kept)) > MAX_ENV_JSON:
            raise refuse(field, f"more than {MAX_ENV_JSON} characters")
        return kept
    raise refuse(field, f"expected a list of requirements, got {type(value).__name__}")


def _env_var_names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise refuse("env_vars", f"expected a mapping of names, got {type(value).__name__}")
    if len(value) > MAX_ENTRIES:
        raise refuse("env_vars", f"more than {MAX_ENTRIES} variables")
    for name in value:
        if not isinstance(name, str) or not ENV_VAR_NAME.match(name):
            raise refuse("env_vars", f"not a variable name: {str(name)[:60]!r}")
    return tuple(sorted(value))


def _setup_timeout(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"setup_timeout_seconds"}:
        raise refuse("config", "only setup_timeout_seconds is supported")
    timeout = value.get("setup_timeout_seconds")
    if timeout is None:
        return None
    ok = isinstance(timeout, int) and not isinstance(timeout, bool)
    if not ok or not 1 <= timeout <= MAX_SETUP_TIMEOUT_S:
        raise refuse("config.setup_timeout_seconds", f"expected 1..{MAX_SETUP_TIMEOUT_S}")
    return int(timeout)
