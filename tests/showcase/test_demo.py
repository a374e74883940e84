"""`python -m jobs.demo` (what `make demo` runs) end to end, in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
MARKER = "WFRAY_DEMO_TEST_MARKER"


def processes_with_marker(value: str) -> list[psutil.Process]:
    """Processes started by the demo: they inherit its environment, marker included."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == value:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def test_the_demo_invoices_mails_summarises_and_leaves_no_process(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    out = tmp_path / "demo"
    env = {**os.environ, MARKER: marker, "RAY_AUTH_MODE": "disabled", "COLUMNS": "120"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.demo", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    took = time.monotonic() - started

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert took < 120, f"the demo took {took:.0f} s"
    for label in ("orders invoiced", "invoices", "PDFs", "e-mails sent", "retries"):
        assert label in done.stdout, done.stdout
    # one customer has no e-mail address: its invoice is compensated
    assert re.search(r"compensations\W+1\b", done.stdout), done.stdout
    assert str(out) in done.stdout
    pdfs = sorted((out / "pdfs").glob("*.pdf"))
    emails = sorted((out / "emails").glob("*.eml"))
    assert pdfs and all(p.read_bytes().startswith(b"%PDF-") for p in pdfs)
    assert len(emails) == len(pdfs)  # every live invoice mailed once, at once or weekly
    deadline = time.monotonic() + 15
    while (left := processes_with_marker(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], [p.cmdline() for p in left]
