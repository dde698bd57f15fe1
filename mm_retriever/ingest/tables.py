"""Tables as structure: PyMuPDF ``find_tables()`` turned into header-propagated text.

A table's cells lose their meaning in a page's reading-order text ("4,512" alone). Here every
data cell becomes one line that carries its row header and column header with it::

    Revenue | 2023 | 4512 (4.5 billion)

Numbers are normalised: thousands separators dropped, ``(1,234)`` read as ``-1234``, currency
signs removed, and when the table (or the text just above it) says its unit ("in millions",
"in thousands") the scaled value is added in words, so "4.5 billion" in a question meets
"4,512" in a table "in millions". The lines are indexed like any page text (BM25 and dense legs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

BBox = tuple[float, float, float, float]

_NUMBER = re.compile(
    r"^\s*(?P<neg>\()?\s*(?P<minus>[-−–])?\s*(?P<cur>[$€£¥])?\s*"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(?P<pct>%)?\s*\)?\s*$"
)
_UNIT = re.compile(r"in\s*(?P<unit>thousands|millions|billions)\b", re.IGNORECASE)
_SCALE = {"thousands": 1e3, "millions": 1e6, "billions": 1e9}


@dataclass(frozen=True)
class TableText:
    """One table found on a page: its box and its header-propagated lines."""

    bbox: BBox
    lines: list[str]
    rows: int
    cols: int

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def normalize_number(cell: str) -> float | None:
    """The value of a numeric cell (``"(1,234)"`` -> -1234.0, ``"$4.5"`` -> 4.5), else None."""
    m = _NUMBER.match(cell or "")
    if m is None:
        return None
    value = float(m.group("num").replace(",", ""))
    if m.group("neg") or m.group("minus"):
        value = -value
    return value


def _plain(value: float) -> str:
    """A number without separators or trailing zeros: 4512.0 -> "4512", -0.5 -> "-0.5"."""
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def scaled_words(value: float, scale: float) -> str:
    """``value * scale`` in words with two significant figures or so: "4.5 billion"."""
    total = value * scale
    for size, word in ((1e12, "trillion"), (1e9, "billion"), (1e6, "million"), (1e3, "thousand")):
        if abs(total) >= size:
            return f"{_plain(round(total / size, 1))} {word}"
    return _plain(round(total, 2))


_GLUED = re.compile(r"(?<=\d)\s*([,.])\s*(?=\d)")
_JUNK = {"", "$", "€", "£", "%", ",", ".", "—", "–", "-"}


def clean_cell(cell: str | None) -> str:
    """Whitespace collapsed, digits re-joined across stray spaces ("2 ,899" -> "2,899"), and a
    dangling separator dropped ("5727 ," -> "5727"); lone "$", "%" and dashes become empty."""
    flat = " ".join((cell or "").split())
    flat = _GLUED.sub(r"\1", flat).strip(" ,.")
    if any(ch.isdigit() for ch in flat):  # "$" and dashes spilled over from a neighbour cell
        flat = re.sub(r"\s*[$€£]\s*", " ", flat).strip(" -–—")
        flat = re.sub(r"\s+%", "%", flat).strip()
    return "" if flat in _JUNK else flat


def cell_text(cell: str, scale: float | None) -> str:
    """A cell for the table text: numbers normalised (plus scaled words when a unit is known),
    other text with its whitespace collapsed."""
    flat = clean_cell(cell)
    value = normalize_number(flat)
    if value is None:
        return flat
    out = _plain(value) + ("%" if flat.rstrip(")").endswith("%") else "")
    if scale and not out.endswith("%"):
        out += f" ({scaled_words(value, scale)})"
    return out


def table_unit(texts: list[str]) -> float | None:
    """The scale a table's numbers are given in ("in millions" -> 1e6), from nearby text."""
    for text in texts:
        m = _UNIT.search(text or "")
        if m:
            return _SCALE[m.group("unit").lower()]
    return None


def _header_rows(rows: list[list[str]]) -> int:
    """How many leading rows are headers: those before the first row with a number (at least
    one row, and never every row)."""
    for i, row in enumerate(rows):
        values = [normalize_number(c) for c in row[1:]]
        values = [v for v in values if v is not None]
        if values and not all(v == int(v) and 1900 <= v <= 2100 for v in values):  # not years
            return max(1, min(i, len(rows) - 1))
    return 1


def table_lines(
    rows: list[list[str | None]], header: list[str | None] | None = None, scale: float | None = None
) -> list[str]:
    """Header-propagated lines of one table.

    ``rows``: the cells, row by row (None for a cell merged into its left neighbour);
    ``header``: column names found outside the cells (PyMuPDF's external header), joined with
    the leading rows without numbers, per column.
    A column without a name takes its left neighbour's when the cell was merged (a header
    spanning columns); a row's first non-empty cell is its row header. Each non-empty data cell
    becomes ``"row header | column header | value"`` (empty parts are left out).
    """
    raw = [list(r) for r in rows if r]
    if not raw:
        return []
    n = _header_rows([[clean_cell(c) for c in r] for r in raw]) if len(raw) > 1 else 0
    head_rows, raw = raw[:n], raw[n:]
    if header is not None:  # a title or header row PyMuPDF found above the cells
        head_rows.insert(0, list(header))
    width = max(len(r) for r in [*raw, *head_rows])
    names = [""] * width
    for hr in head_rows:
        spanned = ""
        for i in range(width):
            cell = hr[i] if i < len(hr) else ""
            text = clean_cell(cell)
            spanned = text or (spanned if cell is None else "")
            if spanned:
                names[i] = f"{names[i]} {spanned}".strip()
    lines: list[str] = []
    for row in raw:
        cells = [clean_cell(c) for c in row]
        first = next((i for i, c in enumerate(cells) if c), None)
        if first is None:
            continue
        row_head = cells[first]
        values = [(i, c) for i, c in enumerate(cells) if c and i != first]
        if not values:  # a section heading row ("Operating expenses:")
            lines.append(row_head)
            continue
        for i, c in values:
            col = names[i] if i < len(names) and names[i] != row_head else ""
            lines.append(" | ".join(p for p in (row_head, col, cell_text(c, scale)) if p))
    return lines


def _cell_words(table: Any, words: list[tuple]) -> list[list[str | None]]:
    """Cell texts rebuilt from the page's words (PyMuPDF's ``extract()`` drops the spaces of
    some text layers: "Costofsales"); None for merged cells, as ``extract()`` gives."""
    rows: list[list[str | None]] = []
    for row in table.rows:
        cells: list[str | None] = []
        for box in row.cells:
            if box is None:
                cells.append(None)
                continue
            x0, y0, x1, y1 = box
            inside = [
                w for w in words if x0 <= (w[0] + w[2]) / 2 <= x1 and y0 <= (w[1] + w[3]) / 2 <= y1
            ]
            inside.sort(key=lambda w: (round(w[3]), w[0]))
            cells.append(" ".join(w[4] for w in inside))
        rows.append(cells)
    return rows


def extract_tables(page: Any, *, strategy: str = "lines", min_cells: int = 4) -> list[TableText]:
    """Tables on a PyMuPDF page as :class:`TableText` (empty when none is found).

    ``strategy``: PyMuPDF's ``find_tables`` strategy ("lines" needs ruling lines and finds few
    false tables; "text" also finds tables drawn without lines). Tables with fewer than
    ``min_cells`` cells are skipped.
    """
    try:
        found = page.find_tables(strategy=strategy)
    except Exception:  # a malformed page must not stop ingestion; it just has no tables
        return []
    out: list[TableText] = []
    words = page.get_text("words") if found.tables else []
    for table in found.tables:
        if table.row_count * table.col_count < min_cells or table.col_count < 2:
            continue
        rows = _cell_words(table, words)
        header = None
        if table.header is not None and table.header.external:
            header = list(table.header.names)
        above = (table.bbox[0], max(0.0, table.bbox[1] - 60), table.bbox[2], table.bbox[1])
        nearby = [page.get_text("text", clip=above)]
        nearby += [" ".join(c or "" for c in r) for r in rows[:3]]
        lines = table_lines(rows, header, table_unit(nearby))
        if lines:
            bbox = tuple(float(v) for v in table.bbox)
            out.append(TableText(bbox, lines, table.row_count, table.col_count))  # type: ignore[arg-type]
    return out
