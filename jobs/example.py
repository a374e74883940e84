"""The built-in demo: a small order workflow, run end to end on a local Ray instance.

    make demo            (or: python -m jobs.example)

It starts Ray, starts wfray with a SQLite store in a temporary folder, runs the workflow
(fan-out, fan-in, one transient failure that is retried), prints every step's attempts and
log lines from the store, and shuts everything down.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from pydantic import BaseModel

import wfray
from wfray import RetryPolicy, StepContext


class OrderBatch(BaseModel):
    customer: str
    order_ids: list[int]


class PricedOrder(BaseModel):
    order_id: int
    net_cents: int
    vat_cents: int


orders = wfray.Workflow("demo-orders", input=OrderBatch)


@orders.step(pool="io")
def fetch_orders(input: OrderBatch, ctx: StepContext) -> list[int]:
    ctx.logger.info("fetching %d orders of %s", len(input.order_ids), input.customer)
    return input.order_ids


@orders.step(map="fetch_orders", retry=RetryPolicy(max_attempts=3, initial_delay_s=0.2))
def price_order(fetch_orders: int, ctx: StepContext) -> PricedOrder:
    if fetch_orders == 2 and ctx.attempt == 1:
        raise ConnectionError("price service timed out (simulated, retried)")
    net = 1000 + 250 * fetch_orders
    ctx.logger.info("order %d: net %d cents", fetch_orders, net)
    return PricedOrder(order_id=fetch_orders, net_cents=net, vat_cents=net * 19 // 100)


@orders.step
def invoice_total(price_order: list[PricedOrder], ctx: StepContext) -> dict[str, int]:
    total = sum(p.net_cents + p.vat_cents for p in price_order)
    ctx.logger.info("invoice over %d orders: %d cents", len(price_order), total)
    return {"orders": len(price_order), "gross_cents": total}


def main() -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    with tempfile.TemporaryDirectory(prefix="wfray-demo-") as data_dir:
        ray.init(
            address="local",
            num_cpus=2,
            resources={"io": 4},
            include_dashboard=False,
            log_to_driver=False,
            namespace="wfray-demo",
        )
        try:
            started = time.monotonic()
            client = wfray.connect(wfray.load_settings(data_dir=data_dir, namespace="wfray-demo"))
            print(f"wfray started on local Ray in {time.monotonic() - started:.1f}s")
            print(f"store: {client.settings.database_url}")
            run = client.submit(
                orders,
                OrderBatch(customer="ACME GmbH", order_ids=[1, 2, 3, 4]),
                idempotency_key="demo-acme-1",
            )
            print(f"submitted run {run.run_id}")
            result = run.result(timeout=120)
            print(f"result: {result}")
            show(client, run.run_id)
            return 0 if result == {"orders": 4, "gross_cents": 7734} else 1
        finally:
            ray.shutdown()


def show(client: wfray.Client, run_id: str) -> None:
    detail = client.detail(run_id)
    print(f"\nrun {run_id}: {detail.run.status.value}")
    for attempt in sorted(detail.attempts, key=lambda a: (a.queued_at, a.map_index, a.attempt)):
        item = f"[{attempt.map_index}]" if attempt.map_index >= 0 else ""
        took = (
            f"{(attempt.finished_at - attempt.started_at).total_seconds() * 1000:.0f}ms"
            if attempt.finished_at and attempt.started_at
            else "-"
        )
        error = f"  {attempt.error_type}: {attempt.error_message}" if attempt.error_type else ""
        print(
            f"  {attempt.step}{item} attempt {attempt.attempt}: {attempt.status.value:9} "
            f"{took:>6} on pid {attempt.pid}{error}"
        )
    print("\nlog lines:")
    for line in client.logs(run_id):
        item = f"[{line.map_index}]" if line.map_index >= 0 else ""
        print(
            f"  {line.ts:%H:%M:%S.%f} {line.step}{item}#{line.attempt} {line.level}: {line.message}"
        )


if __name__ == "__main__":
    sys.exit(main())
