"""The HTTP API on Ray Serve, and the workflows only its tests use.

They live here (not in a conftest) so that Ray workers and the API's replica can import them
by module path: the API loads them through `WFRAY_MODULES`.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from wfray.sdk.context import StepContext
from wfray.sdk.definition import Workflow


class Signup(BaseModel):
    email: str


welcome = Workflow("api_welcome", input=Signup, events=("user.signed_up",))


@welcome.step(pool="io")
def greet(input: Signup, ctx: StepContext) -> str:
    ctx.logger.info("welcome %s", input.email)
    return f"hello {input.email}"


class Pace(BaseModel):
    pause_s: float = 0.8


chatty = Workflow("api_chatty", input=Pace)


@chatty.step(pool="io")
def first(input: Pace, ctx: StepContext) -> int:
    ctx.logger.info("first line")
    time.sleep(input.pause_s)
    return 1


@chatty.step(pool="io")
def second(first: int, input: Pace, ctx: StepContext) -> int:
    ctx.logger.info("second line")
    time.sleep(input.pause_s)
    return first + 1


@chatty.step(pool="io")
def third(second: int, input: Pace, ctx: StepContext) -> int:
    ctx.logger.info("third line")
    time.sleep(input.pause_s)
    return second + 1
