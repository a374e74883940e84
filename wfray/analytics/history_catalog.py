"""The made-up world that `generate_history` simulates: workflows, their steps, outcomes,
the errors that fail an attempt, and the nodes attempts run on."""

from __future__ import annotations

from dataclasses import dataclass

from wfray.domain.status import RunStatus


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    pool: str
    seconds: float  # typical wall time
    resources: dict[str, float]
    compensable: bool = False
    fan_out: int = 0  # up to this many map items; 0: a plain step


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: str
    weight: float
    trigger: str
    steps: tuple[StepSpec, ...]


IO = {"io": 1.0}
CPU = {"CPU": 1.0}
INVOICE = (
    StepSpec("fetch_orders", "io", 1.5, IO),
    StepSpec("filter_delivered", "cpu", 0.4, CPU),
    StepSpec("fetch_prices", "io", 0.8, IO, fan_out=4),
    StepSpec("create_invoice", "io", 0.6, IO, compensable=True),
    StepSpec("render_pdf", "cpu", 3.0, CPU),
    StepSpec("send_email", "io", 0.5, IO),
)
EMAIL_DELIVERY = (
    StepSpec("group_invoices", "cpu", 1.0, CPU),
    StepSpec("send_batch", "io", 2.0, IO, compensable=True, fan_out=3),
    StepSpec("mark_sent", "io", 0.3, IO),
)
NINOX_SYNC = (
    StepSpec("pull", "io", 2.0, IO),
    StepSpec("transform", "cpu", 5.0, {"CPU": 2.0}),
    StepSpec("push", "io", 1.0, IO, compensable=True),
    StepSpec("notify", "io", 0.2, IO),
)
WORKFLOWS = (
    WorkflowSpec("invoice", 6, "schedule", INVOICE),
    WorkflowSpec("email_delivery", 2, "schedule", EMAIL_DELIVERY),
    WorkflowSpec("ninox_sync", 2, "http", NINOX_SYNC),
)
OUTCOMES = (
    (RunStatus.COMPLETED, 0.84),
    (RunStatus.FAILED, 0.06),
    (RunStatus.COMPENSATED, 0.05),
    (RunStatus.COMPENSATION_FAILED, 0.03),
    (RunStatus.CANCELLED, 0.02),
)
TRANSIENT = {
    "io": (
        ("ConnectTimeout", "timed out connecting to the Ninox API"),
        ("HTTPStatusError", "503 Service Unavailable from the PDF processor"),
    ),
    "cpu": (
        ("MemoryError", "out of memory while building the document"),
        ("ValueError", "unexpected price format in order data"),
    ),
    "send": (("SMTPServerDisconnected", "connection unexpectedly closed"),),
}
LOST = ("WorkerCrashedError", "the worker died while running the attempt")


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    host: str
    speed: float  # wall-time factor: 1.0 normal, above 1 slower
