"""Hostile text made harmless, and tables that fit the terminal (wfray/entrypoints/cli_text.py)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.text import Text

from wfray.entrypoints.cli_text import Column, fit_table, printable


def test_control_and_direction_characters_are_shown_as_escapes() -> None:
    assert printable("a\x1b[31mb\x00c\r\nd\te\x07\x7f\x9b") == (
        "a\\x1b[31mb\\0c\\r\\nd\\te\\x07\\x7f\\x9b"
    )
    assert printable("\u202eevil\u2066x\u200b\ufeff") == "\\u202eevil\\u2066x\\u200b\\ufeff"
    assert printable("line one\n\tline two\x1b", keep_lines=True) == "line one\n\tline two\\x1b"
    assert printable("caf\u00e9 \u65e5\u672c [red]") == "caf\u00e9 \u65e5\u672c [red]"


@given(st.text())
def test_nothing_printable_leaves_can_move_the_cursor_or_break_a_line(text: str) -> None:
    shown = printable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    assert not any(c in shown for c in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e")


def render(table: object, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return [line.rstrip() for line in out.getvalue().splitlines()]


COLUMNS = (
    Column("run"),
    Column("workflow", keep=3, max_width=24),
    Column("status", keep=4),
    Column("created", keep=2),
    Column("took", keep=1, drop_below=72),
    Column("trigger", drop_below=110),
    Column("error", max_width=300),
)
ROWS = [
    [Text(v) for v in ("0a1b2c3d", "daily_invoices", "compensation_failed", "12-02 14:06:30",
                       "1.20s", "schedule", "x" * 300)],
    [Text(v) for v in ("9f8e7d6c", "w", "completed", "12-02 14:06:31", "5ms", "http", "")],
]  # fmt: skip


@pytest.mark.parametrize("width", [40, 60, 80, 100, 132, 200])
def test_a_table_fits_its_width_one_line_per_row(width: int) -> None:
    lines = render(fit_table(COLUMNS, ROWS, width), width)
    assert len(lines) == 1 + len(ROWS)
    assert max(len(line) for line in lines) <= width
    assert lines[1].startswith("0a1b2c3d")  # the run column always stays
    assert "…" in lines[1]  # the long error is cut, not wrapped


def test_narrow_terminals_shed_columns_by_priority() -> None:
    wide, at_80, narrow = (render(fit_table(COLUMNS, ROWS, w), w)[0].split() for w in (200, 80, 50))
    assert wide == ["run", "workflow", "status", "created", "took", "trigger", "error"]
    assert at_80 == ["run", "workflow", "status", "created", "error"]
    assert narrow == ["run", "status", "error"]
