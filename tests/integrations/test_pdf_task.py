"""The render_pdf task: reproducible PDFs, read back with pypdf."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Mapping
from typing import Any

import pytest
from pypdf import PdfReader
from reportlab.platypus import Flowable, Paragraph

from tests.integrations import run_inline
from wfray.domain.errors import DefinitionError, NonRetryableError
from wfray.integrations.pdf import (
    PdfDocument,
    register_template,
    render_pdf,
    template_names,
)
from wfray.sdk.definition import registered


def _stock(rows: int) -> dict[str, Any]:
    return {
        "title": "Lagerbestand März",
        "header": {"Lager": "Köln-Süd", "Stand": "2025-03-31"},
        "columns": ["Artikel", "Bezeichnung", "Menge"],
        "rows": [[f"A-{n:04d}", f"Schraube Größe {n} <M>", n * 3] for n in range(1, rows + 1)],
        "align_right": [2],
    }


def _text(pdf: PdfDocument) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(pdf.content())).pages]


def test_rendering_twice_gives_identical_bytes() -> None:
    first = render_pdf("table", _stock(5), title="Lager")
    second = render_pdf("table", _stock(5), title="Lager")
    assert first.content() == second.content()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.content()).hexdigest()
    assert render_pdf("table", _stock(6), title="Lager").sha256 != first.sha256


def test_table_pdf_reads_back_with_every_text() -> None:
    pdf = render_pdf("table", _stock(3), title="Lager")
    content = pdf.content()
    assert content.startswith(b"%PDF-")
    assert pdf.size_bytes == len(content)
    assert pdf.content_base64 == base64.b64encode(content).decode()
    reader = PdfReader(io.BytesIO(content))
    assert len(reader.pages) == pdf.pages == 1
    assert reader.metadata is not None and reader.metadata.title == "Lager"
    (text,) = _text(pdf)
    for expected in ["Lagerbestand März", "Köln-Süd", "Bezeichnung", "Schraube Größe 2 <M>"]:
        assert expected in text
    assert "A-0003" in text and "9" in text
    assert "Lager - Seite 1" in text


def test_long_table_spans_pages_and_repeats_its_header() -> None:
    pdf = render_pdf("table", _stock(150))
    texts = _text(pdf)
    assert pdf.pages == len(texts) >= 3
    for number, text in enumerate(texts, start=1):
        assert "Bezeichnung" in text, f"page {number} lacks the column titles"
        assert f"Seite {number}" in text
    everything = "\n".join(texts)
    assert all(f"A-{n:04d}" in everything for n in range(1, 151))


def test_result_survives_a_json_round_trip() -> None:
    pdf = render_pdf("table", _stock(1))
    assert PdfDocument.model_validate_json(pdf.model_dump_json()) == pdf


def _greeting(data: Mapping[str, Any]) -> list[Flowable]:
    return [Paragraph(f"Hallo {data['name']}")]


def _other(data: Mapping[str, Any]) -> list[Flowable]:
    return []


def test_registered_templates_render() -> None:
    register_template("greeting", _greeting)
    register_template("greeting", _greeting)  # same function again: allowed
    assert "greeting" in template_names() and "table" in template_names()
    (text,) = _text(render_pdf("greeting", {"name": "Anna"}))
    assert "Hallo Anna" in text
    with pytest.raises(DefinitionError, match="already registered"):
        register_template("greeting", _other)


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("nope", {}, "no PDF template named 'nope'; registered: .*table"),
        ("wfray.integrations.pdf:table_template", {}, "not imported by path"),
        ("table", {"columns": ["a"]}, "title: Field required"),
        ("table", {"title": "t", "columns": ["a", "b"], "rows": [["x"]]}, "row 1 has 1 cells"),
        ("table", {"title": "t", "columns": ["a"], "align_right": [3]}, "not a column"),
    ],
)
def test_bad_template_or_data_is_not_retried(
    template: str, data: dict[str, Any], expected: str
) -> None:
    with pytest.raises(NonRetryableError, match=expected):
        render_pdf(template, data)


def test_task_is_declared_on_the_cpu_pool() -> None:
    flow = registered("render_pdf")
    assert flow is not None
    (step,) = flow.schema.steps
    assert step.pool == "cpu"


def test_through_the_coordinator_the_pdf_result_is_stored_as_json() -> None:
    view, _ = run_inline(render_pdf, {"template": "table", "data": _stock(4), "title": "Lager"})
    assert view.status.name == "COMPLETED", view.error
    stored = PdfDocument.model_validate_json(view.result_json or "")
    assert stored == render_pdf("table", _stock(4), title="Lager")


def test_the_table_template_prints_any_european_alphabet() -> None:
    data = {
        "title": "Kunden Łódź / Brno / Αθήνα / Москва",
        "columns": ["Name", "Ort"],
        "rows": [["Żółć", "Łódź"], ["Příliš žluťoučký kůň", "Brno"], ["Ελληνικά", "Αθήνα"]],
    }
    (text,) = _text(
        render_pdf("table", {**data, "rows": [*data["rows"], ["Кондитерская", "Москва"]]})
    )
    for expected in ["Łódź", "Příliš žluťoučký kůň", "Ελληνικά", "Αθήνα", "Кондитерская", "Москва"]:
        assert expected in text
