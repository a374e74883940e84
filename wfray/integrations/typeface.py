"""Unicode fonts for PDFs: DejaVu Sans, shipped with wfray and embedded in each PDF.

reportlab's standard fonts know Latin-1 only, so "Łódź", "Ærø", Greek or Cyrillic names came
out as black boxes. DejaVu Sans (Bitstream Vera licence, fonts/LICENSE_DEJAVU) covers Latin,
Greek and Cyrillic; reportlab embeds only the glyphs a document uses, and names the subsets
deterministically, so PDFs stay small and byte-reproducible.
"""

from __future__ import annotations

import functools
from importlib import resources

from reportlab.lib.fonts import addMapping
from reportlab.lib.styles import ParagraphStyle, StyleSheet1, getSampleStyleSheet
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont

REGULAR = "DejaVuSans"
BOLD = "DejaVuSans-Bold"


@functools.cache
def register_fonts() -> None:
    """Register the fonts with reportlab (once per process), with `<b>` mapped to bold."""
    folder = resources.files("wfray.integrations") / "fonts"
    for name in (REGULAR, BOLD):
        with resources.as_file(folder / f"{name}.ttf") as path:
            pdfmetrics.registerFont(TTFont(name, str(path)))
    addMapping(REGULAR, 0, 0, REGULAR)
    addMapping(REGULAR, 1, 0, BOLD)
    addMapping(REGULAR, 0, 1, REGULAR)  # no oblique shipped: italics stay upright
    addMapping(REGULAR, 1, 1, BOLD)


def unicode_styles() -> StyleSheet1:
    """reportlab's sample style sheet with every style in DejaVu Sans (bold where bold)."""
    register_fonts()
    sheet = getSampleStyleSheet()
    for style in sheet.byName.values():
        if isinstance(style, ParagraphStyle):
            bold = "Bold" in style.fontName
            style.fontName = BOLD if bold else REGULAR
    return sheet
