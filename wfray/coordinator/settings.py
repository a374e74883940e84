"""What a coordinator is configured with (wfray.config.Settings picks the values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from wfray.application.storable import TextLimits
from wfray.coordinator.shared_tasks import SHORT_STEP_S
from wfray.domain.policy import RetryPolicy
from wfray.domain.queueing import QueueConfig


@dataclass(frozen=True, slots=True)
class CoordinatorSettings:
    queues: tuple[QueueConfig, ...] = ()
    pool_windows: dict[str, int] = field(default_factory=lambda: {"cpu": 256, "io": 256})
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    memory_cap: int = 10_000
    max_backlog: int = 1_000_000
    max_map_items: int = 10_000_000  # a longer list mapped over fails its step (outcomes.py)
    # the results of a paged fan-out that is a run's result, collected whole (collection.py)
    max_result_bytes: int | None = None
    quarantine_after_deaths: int = 3  # starts gone down applying one outcome (poison.py)
    drain_wait_s: float = 1.0
    commit_retry_max_s: float = 5.0
    share_short_steps: bool = True  # may short steps' cpu attempts share a task (shared_tasks.py)
    short_step_s: float = SHORT_STEP_S  # under this mean duration a step is short
    text_limits: TextLimits = field(default_factory=TextLimits)  # storable.py
