"""Workflows for the test kit's own tests: long retry delays, a saga, a deadline, a tick.

What the steps did is kept in `EFFECTS` (per order id), the way a test of a real workflow
would watch a fake payment service.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from pydantic import BaseModel

from wfray import NonRetryableError, RetryPolicy, StepContext, Workflow

HOUR = 3600.0
EFFECTS: dict[str, list[str]] = defaultdict(list)
GATES: dict[str, threading.Event] = defaultdict(threading.Event)


class Order(BaseModel):
    id: str
    card: str = "ok"  # "ok": the first charge fails, the retry passes; "declined": all fail
    note: str = ""


# -- a saga whose payment is retried an hour, then two hours later ------------------------------

orders = Workflow("testing_orders", input=Order)


def release(result: str, input: Order) -> None:
    first = not any(effect.startswith("release") for effect in EFFECTS[input.id])
    EFFECTS[input.id].append(f"release:{result}")
    if first:
        raise ConnectionError("the warehouse is busy")  # its retry comes ten minutes later


@orders.step(
    compensate=release,
    compensation_retry=RetryPolicy(max_attempts=3, initial_delay_s=600, max_delay_s=600),
)
def reserve(input: Order) -> str:
    EFFECTS[input.id].append("reserve")
    return f"stock-{input.id}"


@orders.step(
    retry=RetryPolicy(max_attempts=3, initial_delay_s=HOUR, backoff=2, max_delay_s=4 * HOUR)
)
def charge(reserve: str, input: Order, ctx: StepContext) -> str:
    EFFECTS[input.id].append(f"charge:attempt {ctx.attempt}")
    ctx.logger.info("charging order %s for %s (attempt %d)", input.id, reserve, ctx.attempt)
    if input.card == "declined" or ctx.attempt == 1:
        raise ConnectionError(f"the card service timed out{input.note}")
    return f"charged {input.id}"


# -- a run bounded by a deadline, stuck in a retry that comes too late --------------------------

booking = Workflow("testing_booking", input=Order, deadline_s=600)


def unbook(result: str, input: Order) -> None:
    EFFECTS[input.id].append(f"unbook:{result}")


@booking.step(compensate=unbook)
def book(input: Order) -> str:
    EFFECTS[input.id].append("book")
    return f"seat-{input.id}"


@booking.step(retry=RetryPolicy(max_attempts=5, initial_delay_s=HOUR, max_delay_s=HOUR))
def confirm(book: str, input: Order) -> str:
    EFFECTS[input.id].append("confirm")
    raise ConnectionError("the airline does not answer")


# -- scheduled ticks ----------------------------------------------------------------------------


class Tick(BaseModel):
    label: str


ticker = Workflow("testing_ticker", input=Tick)


@ticker.step
def note_tick(input: Tick) -> str:
    EFFECTS["ticks"].append(input.label)
    return input.label


# -- failure modes ------------------------------------------------------------------------------

blocking = Workflow("testing_blocking", input=Order)


@blocking.step
def wait_for_gate(input: Order) -> str:
    GATES[input.id].wait(30)  # the test opens it; the bound keeps a broken test from hanging
    return "opened"


hostile = Workflow(
    "testing_hostile", input=Order, retry=RetryPolicy(max_attempts=2, initial_delay_s=0)
)


@hostile.step
def spoil(input: Order, ctx: StepContext) -> str:
    ctx.logger.warning("a line with a \x00 NUL")
    if ctx.attempt == 1:
        raise ValueError("bad\x00byte " + "x" * 5_000_000)
    return input.note[:10]


final = Workflow("testing_final", input=Order)


@final.step
def refuse(input: Order) -> str:
    raise NonRetryableError(f"order {input.id} is refused")


# -- a parent waiting for child runs whose retries need the clock ------------------------------


class Customers(BaseModel):
    names: list[str]


invoice_all = Workflow("testing_invoice_all", input=Customers)


@invoice_all.step(pool="io")
def start_invoices(input: Customers, ctx: StepContext) -> list[str]:
    children = ctx.run_children(orders, [Order(id=name) for name in input.names])
    return [str(child.result) for child in children.children]


# -- an event starts its subscriber ------------------------------------------------------------

on_paid = Workflow("testing_on_paid", input=Order, events=["testing.paid"])


@on_paid.step
def thank(input: Order) -> str:
    EFFECTS[input.id].append("thanked")
    return f"thanks for {input.id}"


# -- a run whose final step is mapped: its result is the list of its items' results ----------

squares = Workflow("testing_squares")


@squares.step
def numbers(count: int = 3) -> list[int]:
    return list(range(count))


@squares.step(map="numbers")
def square(numbers: int) -> int:
    return numbers * numbers
