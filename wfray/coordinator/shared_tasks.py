"""Shared tasks: which cpu attempts may share one Ray task with others, and how many.

A Ray task costs its owner and its worker about 1 ms of CPU on this kind of machine, whatever
the step does: for a step that runs for 0.1 ms, that overhead is the whole cost. When the
backlog is deep, the cpu executor runs several attempts one after the other in one shared
task (the saving Celery gets from prefetching), each still its own attempt with its own
record. Only attempts of short steps (seen to finish in under `SHORT_STEP_S` on average)
qualify, and none whose timeout or heartbeat would be measured from a start that a shared
task delays. The words, everywhere: a *short step*, whose attempts may *share a task*; a
*shared task*, of at most `ATTEMPTS_PER_SHARED_TASK` attempts (WFRAY_CPU_ATTEMPTS_PER_TASK).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

# A step qualifies once its attempts took less than this on average (exponentially
# weighted): eight of them in one task then hold it for well under a tenth of a second.
SHORT_STEP_S = 0.01
_WEIGHT = 0.2  # of the newest duration in the running mean
ATTEMPTS_PER_SHARED_TASK = 8  # at most (WFRAY_CPU_ATTEMPTS_PER_TASK)


class ShortSteps:
    """The mean duration of each step's attempts, as the coordinator sees them finish.

    Args:
        short_s: the mean under which a step counts as short (SHORT_STEP_S by default).
    """

    def __init__(self, short_s: float = SHORT_STEP_S) -> None:
        self._mean_s: dict[tuple[str, str], float] = {}
        self.short_s = short_s

    def finished(self, workflow: str, step: str, seconds: float) -> None:
        key = (workflow, step)
        mean = self._mean_s.get(key)
        self._mean_s[key] = seconds if mean is None else mean + _WEIGHT * (seconds - mean)

    def is_short(self, workflow: str, step: str) -> bool:
        """A step never seen to finish is not short: it runs alone until it is."""
        mean = self._mean_s.get((workflow, step))
        return mean is not None and mean < self.short_s


def into_shared_tasks(
    attempts: Sequence[T], cpus: float, most: int = ATTEMPTS_PER_SHARED_TASK
) -> list[Sequence[T]]:
    """Attempts of short steps in as few shared tasks as still keep every CPU busy twice
    over, at most `most` to a task; a few on a big cluster stay one attempt per task."""
    if not attempts:
        return []
    tasks = min(len(attempts), max(math.ceil(len(attempts) / most), int(2 * cpus)))
    size, larger = divmod(len(attempts), tasks)  # the first `larger` tasks take one more
    groups, start = [], 0
    for i in range(tasks):
        end = start + size + (i < larger)
        groups.append(attempts[start:end])
        start = end
    return groups
