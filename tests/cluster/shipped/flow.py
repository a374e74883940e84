"""A user's workflow as a job ships it: the tests write this file into a temporary working
dir per "deploy", as `shipped_flow.py` with CODE set to that deploy's name, and submit a Ray
job with that dir. It is never imported from the repository by the cluster's processes.

Same workflow name, same steps (so the same DAG version) in every deploy: only the code
differs, so only the recorded runtime env tells the deploys apart.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

import wfray
from wfray.domain.errors import NonRetryableError
from wfray.domain.policy import RetryPolicy

CODE = "template"


class Ask(BaseModel):
    gate: str | None = None  # the io step waits for this file to exist
    fail_unless: str | None = None  # the cpu step fails while this file does not exist
    pip_probe: bool = False  # the io step imports `inflection`, which only a pip env has


flow = wfray.Workflow("shipped", input=Ask, retry=RetryPolicy(max_attempts=1), events=["ship"])
wfray.schedule(flow, name=f"shipped-{CODE}", cron="0 0 1 1 *", input={})


@flow.step
def compute(input: Ask) -> str:
    if input.fail_unless is not None and not os.path.exists(input.fail_unless):
        raise NonRetryableError(f"{input.fail_unless} does not exist yet (simulated)")
    return f"cpu:{CODE}"


@flow.step(pool="io")
async def answer(compute: str, input: Ask) -> str:
    while input.gate is not None and not os.path.exists(input.gate):
        await asyncio.sleep(0.1)
    if input.pip_probe:
        import inflection  # type: ignore[import-not-found]  # in no environment of wfray's

        return f"{compute}+io:{CODE}+{inflection.camelize('pip_probe')}"
    return f"{compute}+io:{CODE}"
