"""Text for a terminal: hostile values made harmless, and tables laid out for its width.

Anything stored may hold what a step, a caller or an error put there: NUL bytes, ANSI escape
sequences (which recolour, move the cursor or retitle the terminal), carriage returns and
newlines (which break a table's rows), Unicode direction overrides (which reorder what is
shown). `printable` writes each such character as a visible escape (`\\x1b`, `\\n`,
`\\u202e`), so what is shown is what is stored, one row per run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

# C0 and C1 controls, DEL, zero-width and direction marks, line/paragraph separators, the
# bidirectional embeddings, overrides and isolates, and the byte-order mark.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
COLUMN_GAP = 2  # one space of padding either side of the gap between two columns
MIN_LAST_COLUMN = 12


def printable(text: str, keep_lines: bool = False) -> str:
    """`text` with every control or direction character shown as an escape; with
    `keep_lines`, newlines and tabs stay (log lines, tracebacks)."""

    def escaped(match: re.Match[str]) -> str:
        char = match.group()
        if keep_lines and char in "\n\t":
            return char
        code = ord(char)
        return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")

    return _UNSAFE.sub(escaped, text)


def terminal_width() -> int:
    """The terminal's columns: COLUMNS if set, else the terminal's own size, else 80."""
    return max(20, shutil.get_terminal_size((80, 24)).columns)


@dataclass(frozen=True)
class Column:
    """A table column: its header, the style of its cells, and how it gives way to others.

    `drop_below`: the column is left out in terminals narrower than this; when the columns
    still do not fit, those of the lowest `keep` go first (the first and the last column
    stay). The last column takes the width that is left and cuts its text with `...`.
    """

    header: str
    drop_below: int = 0
    max_width: int = 40
    keep: int = 0


def fit_table(columns: Sequence[Column], rows: Sequence[Sequence[Text]], width: int) -> Table:
    """A borderless table no wider than `width`: columns that do not fit it are left out,
    each cell stays on one line (cut with `...`), the last column takes what is left."""
    natural = [
        min(column.max_width, max([len(column.header), *(row[i].cell_len for row in rows)]))
        for i, column in enumerate(columns)
    ]
    kept = [i for i, column in enumerate(columns) if width >= column.drop_below]
    while True:
        *fixed, last = kept
        room = width - sum(natural[i] for i in fixed) - COLUMN_GAP * len(fixed)
        if room >= min(natural[last], MIN_LAST_COLUMN) or len(kept) <= 2:
            break
        middle = kept[1:-1]
        kept.remove(min(middle, key=lambda i: (columns[i].keep, -i)))
    table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold", expand=False)
    for i in kept:
        size = natural[i] if i != last else max(1, min(natural[i], room))
        table.add_column(columns[i].header, width=size, no_wrap=True, overflow="ellipsis")
    for row in rows:
        table.add_row(*(row[i] for i in kept))
    return table
