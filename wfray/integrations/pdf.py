"""The built-in `render_pdf` task: a named reportlab template plus data gives a PDF.

    client.submit("render_pdf", {"template": "table", "data": {"title": "Stock", ...}})

A template is a function `data -> list of flowables`, registered by name in code with
`register_template` (in a module the worker imports). Only registered names resolve: a task
input never names code to import, so a caller cannot make a worker run a function of its
choosing (`subprocess:getoutput`, say). PDFs are byte-reproducible (`invariant=1`: no creation
date, fixed document id) and set their text in DejaVu Sans (typeface.py), embedded, so names
in any European alphabet print.
The result carries the bytes base64-encoded, so it stays JSON like every step result.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from xml.sax.saxutils import escape

from pydantic import BaseModel, Field, ValidationError
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Flowable, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from wfray.domain.errors import DefinitionError, NonRetryableError
from wfray.integrations.typeface import BOLD, REGULAR, register_fonts, unicode_styles
from wfray.sdk.tasks import task

Template = Callable[[Mapping[str, Any]], list[Flowable]]

MARGIN = 18 * mm
# The width templates may fill: A4 less the left and right margins.
FRAME_WIDTH = A4[0] - 2 * MARGIN

_templates: dict[str, Template] = {}


class PdfDocument(BaseModel):
    """A rendered PDF.

    Attributes:
        content_base64: the PDF bytes, base64-encoded (`content()` decodes them).
        sha256: hex digest of the bytes: equal inputs give equal digests.
        pages: the page count.
        size_bytes: the length of the PDF in bytes.
    """

    content_base64: str
    sha256: str
    pages: int
    size_bytes: int

    def content(self) -> bytes:
        return base64.b64decode(self.content_base64)


def register_template(name: str, template: Template) -> None:
    """Make `template` available to `render_pdf` under `name`.

    Registering the same function again is a no-op (modules may be imported twice);
    another function under a taken name is a DefinitionError.
    """
    if not name or ":" in name:
        raise DefinitionError(f"template name must be non-empty and without ':', got {name!r}")
    existing = _templates.get(name)
    if existing is not None and _qualified(existing) != _qualified(template):
        raise DefinitionError(
            f"template {name!r} is already registered to {_qualified(existing)}, "
            f"cannot register {_qualified(template)}"
        )
    _templates[name] = template


def template_names() -> list[str]:
    return sorted(_templates)


def find_template(name: str) -> Template:
    """The template registered as `name`; a NonRetryableError for any other name.

    Names are looked up in the registry only, never imported: the input of `render_pdf`
    comes from whoever started the run.
    """
    found = _templates.get(name)
    if found is not None:
        return found
    registered = ", ".join(template_names()) or "none"
    if ":" in name:
        raise NonRetryableError(
            f"PDF template {name!r} refused: templates are not imported by path from a task "
            f"input; register it in code with register_template (registered: {registered})"
        )
    raise NonRetryableError(
        f"no PDF template named {name!r}; registered: {registered} (templates are "
        "registered in code with register_template, in a module the worker imports)"
    )


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def render_document(
    template: str,
    data: Mapping[str, Any],
    *,
    title: str = "",
    author: str = "wfray",
    footer: str | None = None,
) -> PdfDocument:
    """Render `data` with a template into an A4 PDF with page numbers in the footer.

    Bad data (the template raises ValueError, KeyError or TypeError, pydantic's
    ValidationError included) is a NonRetryableError naming the template.
    """
    build = find_template(template)
    register_fonts()
    try:
        story = build(data)
    except (ValueError, KeyError, TypeError) as exc:
        detail = _describe(exc)
        raise NonRetryableError(f"template {template!r} cannot use this data: {detail}") from exc
    label = footer if footer is not None else title

    def decorate(canvas: Canvas, doc: SimpleDocTemplate) -> None:
        canvas.saveState()
        canvas.setFont(REGULAR, 8)
        text = f"{label} - Seite {doc.page}" if label else f"Seite {doc.page}"
        canvas.drawRightString(A4[0] - MARGIN, 10 * mm, text)
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=20 * mm,
        title=title,
        author=author,
        creator="wfray",
        invariant=1,
    )
    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    content = buffer.getvalue()
    return PdfDocument(
        content_base64=base64.b64encode(content).decode("ascii"),
        sha256=hashlib.sha256(content).hexdigest(),
        pages=int(doc.page),
        size_bytes=len(content),
    )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'data'}: {error['msg']}"
            for error in exc.errors()
        )
    return f"{type(exc).__name__}: {exc}"


# A template is named, never a path to import: a ':' is refused before a run is stored.
TemplateName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^:]+$")]


@task(pool="cpu")
def render_pdf(
    template: TemplateName, data: dict[str, Any], title: str = "", author: str = "wfray"
) -> PdfDocument:
    """Render `data` with the template named `template` (see `template_names()`)."""
    return render_document(template, data, title=title, author=author)


# --- the built-in "table" template --------------------------------------------------------


class TableData(BaseModel):
    """Input of the "table" template: a title, key/value lines, then a table.

    Attributes:
        title: the heading.
        header: key/value lines under the heading ("Customer": "Anna Berg", ...).
        columns: the table's column titles (repeated on every page).
        rows: the rows; each as long as `columns`.
        align_right: indexes of columns to align right (amounts, counts).
    """

    title: str
    header: dict[str, str] = Field(default_factory=dict)
    columns: list[str] = Field(min_length=1)
    rows: list[list[str | int | float]] = Field(default_factory=list)
    align_right: list[int] = Field(default_factory=list)


def cell(text: object, style: ParagraphStyle) -> Paragraph:
    """A table cell that wraps long text; the text is escaped, never read as markup."""
    return Paragraph(escape(str(text)), style)


def table_template(data: Mapping[str, Any]) -> list[Flowable]:
    spec = TableData.model_validate(data)
    width = len(spec.columns)
    for number, row in enumerate(spec.rows, start=1):
        if len(row) != width:
            raise ValueError(f"row {number} has {len(row)} cells, expected {width} (columns)")
    for index in spec.align_right:
        if not 0 <= index < width:
            raise ValueError(f"align_right index {index} is not a column (0 to {width - 1})")
    styles = unicode_styles()
    body = ParagraphStyle("cell", parent=styles["BodyText"], fontSize=9, leading=11)
    right = ParagraphStyle("cell-right", parent=body, alignment=2)
    bold = ParagraphStyle("cell-bold", parent=body, fontName=BOLD)
    story: list[Flowable] = [Paragraph(escape(spec.title), styles["Title"])]
    if spec.header:
        lines = [[cell(k, bold), cell(v, body)] for k, v in spec.header.items()]
        story += [
            Table(lines, colWidths=[45 * mm, FRAME_WIDTH - 45 * mm], hAlign="LEFT"),
            Spacer(1, 6 * mm),
        ]

    def styled(index: int) -> ParagraphStyle:
        return right if index in spec.align_right else body

    rows = [[cell(c, bold) for c in spec.columns]]
    rows += [[cell(value, styled(i)) for i, value in enumerate(row)] for row in spec.rows]
    table = Table(rows, colWidths=[FRAME_WIDTH / width] * width, repeatRows=1, hAlign="LEFT")
    table.setStyle(GRID_STYLE)
    story.append(table)
    return story


GRID_STYLE = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8e8e8")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]
)

register_template("table", table_template)
