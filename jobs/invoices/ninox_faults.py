"""Fault injection for the local Ninox server: latency, 429 with Retry-After, 5xx.

Rules are matched in order against the HTTP method and the URL path (an `fnmatch` glob, in
which `*` also spans `/`). A rule fires for the next `times` matching requests (or for every
one), each time with `probability`, drawn from a seeded RNG so a fault plan replays
identically. Tests set rules from Python (`state.faults`); the demo in another process sets
them through the server's admin route.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field


class FaultRule(BaseModel):
    """One kind of fault, for the requests it matches.

    Attributes:
        method: HTTP method to match (`GET`, `POST`, ...), or `*` for any.
        path: glob on the URL path, e.g. `*/tables/Orders/records*`.
        status: HTTP status to answer instead of the real handler (429, 500, 503, ...);
            None injects only latency.
        retry_after: value of the Retry-After header sent with `status` (seconds or an
            HTTP-date), or None for no header.
        latency_s: delay before answering (before the fault or the real handler).
        times: fire for the next N matching requests only; None fires on every match.
        probability: chance that a matching request is hit (drawn from the seeded RNG).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = "*"
    path: str = "*"
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: str | None = None
    latency_s: float = Field(default=0.0, ge=0.0, le=60.0)
    times: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method == "*" or self.method.upper() == method.upper()
        return method_ok and fnmatchcase(path, self.path)


class FaultPlan(BaseModel):
    """A whole fault configuration: the RNG seed and the rules, replacing any before."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    rules: list[FaultRule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What to do to one request."""

    latency_s: float
    status: int | None
    retry_after: str | None


@dataclass(frozen=True, slots=True)
class InjectedFault:
    """A fault that was applied, kept so tests and the demo can count them."""

    method: str
    path: str
    status: int | None
    latency_s: float


@dataclass(slots=True)
class _ActiveRule:
    rule: FaultRule
    remaining: int | None


class FaultInjector:
    """Thread-safe rule set, shared by the server thread and the test or demo."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: list[_ActiveRule] = []
        self._injected: list[InjectedFault] = []

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(_ActiveRule(rule, rule.times))

    def apply(self, plan: FaultPlan) -> None:
        """Replace every rule and reseed the RNG."""
        with self._lock:
            self._rng = random.Random(plan.seed)
            self._rules = [_ActiveRule(rule, rule.times) for rule in plan.rules]

    def clear(self) -> None:
        """Remove every rule; the record of injected faults is kept."""
        with self._lock:
            self._rules = []

    def describe(self) -> list[dict[str, object]]:
        """The rules still active, each with the number of hits it has left."""
        with self._lock:
            return [
                {**active.rule.model_dump(), "remaining": active.remaining}
                for active in self._rules
                if active.remaining != 0
            ]

    @property
    def injected(self) -> list[InjectedFault]:
        with self._lock:
            return list(self._injected)

    def decide(self, method: str, path: str) -> FaultAction | None:
        """The fault for this request, if a rule hits it; consumes one of the rule's hits."""
        with self._lock:
            for active in self._rules:
                if active.remaining == 0 or not active.rule.matches(method, path):
                    continue
                if active.rule.probability < 1.0 and self._rng.random() >= active.rule.probability:
                    continue
                if active.remaining is not None:
                    active.remaining -= 1
                rule = active.rule
                self._injected.append(InjectedFault(method, path, rule.status, rule.latency_s))
                return FaultAction(rule.latency_s, rule.status, rule.retry_after)
            return None
