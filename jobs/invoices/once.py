"""Side effects once across runs: the claims the invoice workflows take in wfray's store.

Two runs of a workflow may overlap (a scheduled tick and a manual trigger, a rerun after a
crash). Before a side effect that must happen once (an invoice created, an e-mail sent),
the step claims a key naming that effect (`claim_or_wait`):

- acquired: this step does it (a retry of the same step gets its claim back; a step whose
  holder died takes it over, `claim.taken_over`, and must check Ninox first: the dead
  holder may have done it), then marks the claim done with a small result;
- done by another run: it skips the effect and reuses that run's result;
- held by another run that is still running (or will retry): it waits, polling the claim,
  until the holder marks it done (skip, reuse) or dies (take over). The holder's TTL
  bounds the wait: past it an unfinished hold counts as died. If the wait outlasts the TTL
  anyway, the step asks to be retried later.
"""

from __future__ import annotations

import hashlib
import time

from wfray import StepContext
from wfray.domain.errors import RetryLater
from wfray.domain.limits import MAX_KEY_CHARS
from wfray.sdk.runtime import Claim

WAIT_POLL_S = 0.2


def claim_key(kind: str, scope: str, name: str) -> str:
    """`<kind>:<scope>:<name>`, or with the name hashed if that would be too long a key
    (a customer with hundreds of orders): the same inputs always give the same key."""
    key = f"{kind}:{scope}:{name}"
    if len(key) <= MAX_KEY_CHARS:
        return key
    digest = hashlib.sha256(name.encode()).hexdigest()[:40]
    return f"{kind}:{hashlib.sha256(scope.encode()).hexdigest()[:16]}:sha256={digest}"


def claim_or_wait(ctx: StepContext, key: str, ttl_s: float) -> Claim:
    """The claim on `key`, once it is this step's (`acquired`) or done (by anyone).

    While another run's step holds it unfinished, wait for that step to finish or die.
    """
    claim = ctx.claim(key, ttl=ttl_s)
    if claim.acquired or claim.is_done:
        return claim
    h = claim.holder
    ctx.logger.info(
        "%s is held by run %s (step %s, attempt %d, %s): waiting for it to finish or die",
        key,
        h.run_id,
        h.step,
        h.attempt,
        claim.state,
    )
    give_up = time.monotonic() + ttl_s + 10 * WAIT_POLL_S
    while not (claim.acquired or claim.is_done):
        if time.monotonic() > give_up:
            raise RetryLater(f"{key} still held by run {h.run_id} after {ttl_s:g} s", ttl_s)
        time.sleep(WAIT_POLL_S)
        claim = ctx.claim(key, ttl=ttl_s)
    return claim


def holder_note(claim: Claim) -> str:
    """'run <id> (step <name>, attempt <n>)': who holds or held a claim, for logs."""
    h = claim.holder
    return f"run {h.run_id} (step {h.step}, attempt {h.attempt})"
