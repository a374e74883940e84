"""Asking wfray's detached actors which wfray they run, before trusting them.

`get_if_exists` and `ray.get_actor` hand back whatever actor holds the name, whichever code
made it: after an upgrade of wfray the coordinator and executors found on the cluster may
still run the old release. Each wfray actor answers `versions()` with plain data (no wfray
class, so any release can read any other's answer); an actor without that method predates
it, or is not wfray.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from ray import exceptions as rex

from wfray.domain.versions import CURRENT, Versions, check_same

ASK_TIMEOUT_S = 60.0  # a coordinator or executor being created on a loaded cluster


def versions_call(handle: Any) -> Any:
    """The ObjectRef of the actor's `versions()` answer, or None if it has no such method."""
    try:
        method = handle.versions
    except AttributeError:
        return None
    return method.remote()


def _answered(answer: object) -> Versions | None:
    return Versions.from_answer(answer)


def check_actor(handle: Any, who: str, me: str, timeout_s: float = ASK_TIMEOUT_S) -> None:
    """Raise VersionMismatchError unless the actor runs this process's wfray and schema.

    Ray's errors about the actor itself (it is restarting, it died) pass through for the
    caller's retry rules; one that cannot answer the question counts as not reporting.
    """
    ref = versions_call(handle)
    theirs = None
    if ref is not None:
        try:
            theirs = _answered(ray.get(ref, timeout=timeout_s))
        except rex.RayTaskError:
            theirs = None
    check_same(CURRENT, theirs, who, me)


async def check_actors_async(
    handles: dict[str, Any], who: dict[str, str], me: str, timeout_s: float = ASK_TIMEOUT_S
) -> None:
    """`check_actor` for several actors at once, from inside an async actor."""
    refs = {name: versions_call(handle) for name, handle in handles.items()}

    async def ask(ref: Any) -> Versions | None:
        if ref is None:
            return None
        try:
            return _answered(await asyncio.wait_for(ref, timeout_s))
        except rex.RayTaskError:
            return None

    answers = await asyncio.gather(*(ask(ref) for ref in refs.values()))
    for name, theirs in zip(refs, answers, strict=True):
        check_same(CURRENT, theirs, who[name], me)
