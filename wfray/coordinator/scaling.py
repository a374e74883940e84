"""Demand from the backlog: which resource bundles the cluster should hold, per pool, capped.

Pure: the coordinator's queued and running tasks go in, a list of Ray resource bundles comes
out. The Ray adapter (`wfray.adapters.ray.autoscale`) hands that list to the autoscaler, so
the queue depth of each pool, not guesswork, adds worker nodes; an empty list releases the
request once the backlog drains, and idle nodes time out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from wfray.domain.run_state import RunState
from wfray.domain.status import TaskStatus

Shape = tuple[tuple[str, float], ...]  # sorted (resource, amount) pairs: hashable, comparable
Bundle = dict[str, float]

# Tasks that occupy (or are waiting for) a slot of their pool right now.
DEMANDING = frozenset({TaskStatus.QUEUED, TaskStatus.RUNNING, TaskStatus.COMPENSATING})
IO_SLOT = "io"  # the custom resource that meters io concurrency on io nodes (cluster.yaml)


def attempt_shape(pool: str, num_cpus: float | None, resources: Mapping[str, float]) -> Shape:
    """The resources one attempt of a step needs on a node of its pool.

    A cpu attempt is a Ray task holding `num_cpus` (default 1) plus the step's resources. An
    io attempt runs as a coroutine in the io executor, metered by one `io` slot. A custom
    pool is whatever resources the step names.
    """
    shape = {name: float(amount) for name, amount in resources.items() if amount > 0}
    if pool == "cpu":
        cpus = 1.0 if num_cpus is None else float(num_cpus)
        if cpus > 0:
            shape["CPU"] = cpus
    elif pool == "io":
        shape.setdefault(IO_SLOT, 1.0)
    return tuple(sorted(shape.items()))


def count_backlog(runs: Iterable[RunState]) -> Counter[tuple[str, Shape]]:
    """Queued and running tasks of the runs held in memory, by (pool, attempt shape), and
    the items of paged fan-outs not yet created (they will be queued)."""
    counts: Counter[tuple[str, Shape]] = Counter()
    for state in runs:
        for task in state.tasks.values():
            if task.status in DEMANDING and task.map_count is None:  # a fan-out's row: its items
                step = state.schema.step(task.step)
                counts[(task.pool, attempt_shape(task.pool, step.num_cpus, step.resources))] += 1
        for name, created in state.next_item.items():
            group, step = state.task(name), state.schema.step(name)
            if group.status is TaskStatus.RUNNING and group.map_count is not None:
                shape = attempt_shape(group.pool, step.num_cpus, step.resources)
                counts[(group.pool, shape)] += group.map_count - created
    return counts


def demand(
    backlog: Mapping[tuple[str, Shape], int], max_bundles: Mapping[str, int]
) -> list[Bundle]:
    """The bundles to request: one per queued or running attempt, at most `max_bundles[pool]`.

    A pool missing from `max_bundles`, or capped at 0, requests nothing (scaling disabled
    for it). Within a pool the most common shapes come first, so a cap keeps the bulk of the
    demand. The answer is deterministic: the same backlog gives the same list, so a caller
    can skip a request that did not change. An empty list means "release the request".
    """
    bundles: list[Bundle] = []
    for pool in sorted({pool for pool, _ in backlog}):
        room = max(0, max_bundles.get(pool, 0))
        shapes = sorted(
            ((shape, count) for (p, shape), count in backlog.items() if p == pool and shape),
            key=lambda item: (-item[1], item[0]),
        )
        for shape, count in shapes:
            take = min(count, room)
            bundles.extend(dict(shape) for _ in range(take))
            room -= take
    return bundles
