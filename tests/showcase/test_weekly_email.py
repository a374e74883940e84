"""The weekly e-mail workflow: one mail per weekly customer with all their unsent invoices."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from jobs.invoices.flows import INVOICES
from jobs.invoices.ninox_client import NinoxClient
from jobs.invoices.settings import InvoiceSettings
from jobs.invoices.smtp_sink import SmtpSink
from jobs.invoices.weekly import WeeklyInput, WeeklySummary, weekly_email
from tests.showcase.test_daily_invoices import (  # the fixtures wf, server, sink, ...
    RUN_TIMEOUT_S,
    immediate_customers,
    ninox_fixture,  # noqa: F401
    run_daily,
    server_fixture,  # noqa: F401
    settings_fixture,  # noqa: F401
    sink_fixture,  # noqa: F401
    wf_fixture,  # noqa: F401
)

WEEK = "2025-W48"


def run_weekly(wf: Any, settings: InvoiceSettings) -> WeeklySummary:
    run = wf.submit(weekly_email, WeeklyInput(settings=settings, week=WEEK))
    return WeeklySummary.model_validate(run.result(timeout=RUN_TIMEOUT_S))


def test_each_weekly_customer_gets_one_mail_with_all_their_invoices_once(
    wf: Any, settings: InvoiceSettings, ninox: NinoxClient, sink: SmtpSink
) -> None:
    run_daily(wf, settings)
    # a second invoice for weekly customer 3: one order delivered after the first run
    late = ninox.create_record(
        "Orders",
        {"Order no": "B-2025-L0001", "Customer": 3, "Order date": "2025-11-27"}
        | {"Status": "delivered", "Delivered on": "2025-11-28"},
    )
    ninox.create_record("OrderItems", {"Order": late.id, "Product": 1, "Quantity": 2})
    run_daily(wf, settings)
    immediate_mails = len(sink.messages())
    expected: dict[int, set[str]] = defaultdict(set)
    for record in ninox.list_records(INVOICES, filters={"Status": "pdf_ready"}):
        expected[int(record.fields["Customer"])].add(str(record.fields["Invoice no"]))
    assert sorted(expected) == [3, 4] and len(expected[3]) == 2
    assert not set(expected) & immediate_customers(ninox)

    summary = run_weekly(wf, settings)

    weekly_mails = sink.messages()[immediate_mails:]
    assert summary.emails == len(weekly_mails) == 2
    assert summary.invoices == 3
    got: dict[int, set[str]] = {}
    for mail in weekly_mails:
        parsed = mail.parsed()
        outcome = next(o for o in summary.sent if o.message_id == parsed["Message-ID"])
        assert parsed["Message-ID"].startswith(f"<weekly-{outcome.customer_id}-{WEEK}-")
        assert mail.rcpt_tos == (
            str(ninox.get_record("Customers", outcome.customer_id).fields["Email"]),
        )
        attachments = list(parsed.iter_attachments())
        assert all(a.get_content_type() == "application/pdf" for a in attachments)
        assert all(a.get_content().startswith(b"%PDF-") for a in attachments)
        got[outcome.customer_id] = {str(a.get_filename()).removesuffix(".pdf") for a in attachments}
    assert got == expected
    for numbers in expected.values():
        for number in numbers:
            (record,) = ninox.list_records(INVOICES, filters={"Invoice no": number})
            assert record.fields["Status"] == "sent_weekly" and record.fields["Emailed at"]

    # a second start the same week is answered with this week's run: nothing is sent again
    again = wf.submit(weekly_email, WeeklyInput(settings=settings, week=WEEK))
    assert WeeklySummary.model_validate(again.result(timeout=RUN_TIMEOUT_S)) == summary
    assert len(sink.messages()) == immediate_mails + 2


def test_with_nothing_to_send_no_mail_goes_out(
    wf: Any, settings: InvoiceSettings, sink: SmtpSink
) -> None:
    summary = run_weekly(wf, settings)  # no daily run: no invoices at all

    assert summary.emails == 0 and summary.invoices == 0
    assert sink.messages() == []
