"""Retry policies: frozen values that turn a failed attempt into a decision."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wfray.domain.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """What the policy needs to know of a failed attempt.

    Attributes:
        error_type: qualified name of the exception class.
        message: the exception message.
        retryable: False when the step raised NonRetryableError (or equivalent).
        retry_after_s: a delay the step asked for (RetryLater), overriding the backoff.
        lost: the worker, node or executor died: infrastructure, not the step's fault.
    """

    error_type: str
    message: str
    retryable: bool = True
    retry_after_s: float | None = None
    lost: bool = False


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Retry at `retry_at`, or give up (`retry_at is None`)."""

    retry_at: datetime | None
    reason: str

    @property
    def give_up(self) -> bool:
        return self.retry_at is None


class RetryPolicy(BaseModel):
    """Exponential backoff with optional jitter.

    Attributes:
        max_attempts: attempts in all, the first included (1 means no retry).
        initial_delay_s: delay before the second attempt.
        backoff: multiplier applied per further attempt.
        max_delay_s: cap on any single delay.
        jitter: fraction of the delay drawn at random (0 to 1), to spread retry storms.
        max_lost_attempts: separate cap for attempts lost to dead workers or nodes.
        non_retryable: exception type names (qualified or bare) that must not be retried.
        retryable: when given, only these exception types are retried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3)
    initial_delay_s: float = 1.0
    backoff: float = 2.0
    max_delay_s: float = 300.0
    jitter: float = 0.0
    max_lost_attempts: int = 5
    non_retryable: tuple[str, ...] = ()
    retryable: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> RetryPolicy:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("initial_delay_s", "max_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.backoff < 1:
            raise ValueError(f"backoff must be at least 1, got {self.backoff}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.max_lost_attempts < 0:
            raise ValueError(
                f"max_lost_attempts must not be negative, got {self.max_lost_attempts}"
            )
        return self

    def delay_s(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """The backoff before the next attempt, after `failed_attempts` failures (>= 1)."""
        try:
            raw = self.initial_delay_s * self.backoff ** (failed_attempts - 1)
        except OverflowError:  # a long "retry forever" policy: the growth passed any cap
            raw = math.inf if self.initial_delay_s else 0.0
        base = min(self.max_delay_s, raw)
        if self.jitter and base:
            spread = base * self.jitter
            base = base - spread + (rng or random).random() * spread
        return base

    def decide(
        self,
        failure: FailureInfo,
        failed_attempts: int,
        lost_attempts: int,
        now: datetime,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Decide what follows a failed attempt.

        Args:
            failure: the failure of the attempt that just ended.
            failed_attempts: application failures so far, this one included.
            lost_attempts: lost attempts so far, this one included.
            now: the current time.
            rng: randomness for jitter (a seeded one in tests).
        """
        if failure.lost:
            if lost_attempts > self.max_lost_attempts:
                return RetryDecision(
                    None, f"lost {lost_attempts} times (cap {self.max_lost_attempts})"
                )
            return RetryDecision(now, "attempt lost: retry at once")
        if not failure.retryable or _listed(failure.error_type, self.non_retryable):
            return RetryDecision(None, f"{failure.error_type} is not retryable")
        if self.retryable and not _listed(failure.error_type, self.retryable):
            return RetryDecision(None, f"{failure.error_type} is not among the retryable types")
        if failed_attempts >= self.max_attempts:
            return RetryDecision(None, f"gave up after {failed_attempts} attempts")
        if failure.retry_after_s is not None:
            return RetryDecision(
                now + timedelta(seconds=failure.retry_after_s), "step asked to retry later"
            )
        return RetryDecision(now + timedelta(seconds=self.delay_s(failed_attempts, rng)), "backoff")


def _listed(error_type: str, names: tuple[str, ...]) -> bool:
    bare = error_type.rsplit(".", 1)[-1]
    return error_type in names or bare in names


def validate_policy(step: str, policy: object) -> RetryPolicy:
    """Check a policy given at definition time, naming the step when it is wrong."""
    if not isinstance(policy, RetryPolicy):
        raise DefinitionError(
            f"step {step!r}: retry must be a RetryPolicy, got {type(policy).__name__}"
        )
    return policy
