"""What a page of a report is: its statement or section (``PageSection``), from its headings.

Financial statements open with their title in the first lines of the page ("CONSOLIDATED BALANCE
SHEETS", "Consolidated Statements of Cash Flows (continued)"); notes open with "Note 5 -
Inventories"; the parts of a filing with their item headings ("Item 1A. Risk Factors", "ITEM 7.
MANAGEMENT'S DISCUSSION AND ANALYSIS ..."), which hold until the next item heading. A page listing
many items or statements is a table of contents; the first page with the SEC header is the cover.
:func:`page_sections` reads every page of a document in order (an item or the notes carry over to
the pages that follow their heading); pages it cannot place get ``""``. Pure text work.

Sections (``SECTIONS``): ``income_statement``, ``comprehensive_income``, ``balance_sheet``,
``cash_flow``, ``equity`` (the primary statements), ``notes`` (``title``: the note's title),
``mda``, ``risk_factors``, ``market_risk``, ``business``, ``selected_data``, ``controls``,
``cover``, ``toc``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

STATEMENTS = ("income_statement", "comprehensive_income", "balance_sheet", "cash_flow", "equity")
SECTIONS = (
    *STATEMENTS,
    "notes",
    "mda",
    "risk_factors",
    "market_risk",
    "business",
    "selected_data",
    "controls",
    "cover",
    "toc",
)
#: lines from the top of a page where a heading may stand
HEAD_LINES = 10
#: words besides a statement's title on its heading line ("NIKE, Inc. Consolidated ...")
HEADING_EXTRA_WORDS = 6
#: pages either side of a statement page searched for the other statements
BLOCK = 6

_OF = r"statements?\s+of\s+(?:consolidated\s+)?"
_STATEMENT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("comprehensive_income", rf"\b{_OF}comprehensive\s+(?:income|loss|earnings)"),
        (
            "income_statement",
            rf"\b(?:{_OF}(?:income|operations|earnings)\b|income\s+statements?\b"
            r"|statements?\s+of\s+profit\s+(?:and|or)\s+loss)",
        ),
        (
            "balance_sheet",
            rf"\b(?:balance\s+sheets?|{_OF}financial\s+(?:position|condition))\b",
        ),
        ("cash_flow", rf"\b(?:{_OF}cash\s+flows?|cash\s+flows?\s+statements?)\b"),
        (
            "equity",
            rf"\b{_OF}(?:changes\s+in\s+)?(?:(?:share|stock)holders['’]?\s+|shareowners['’]?\s+)?"
            r"(?:equity|deficit)\b|\bstatements?\s+of\s+changes\s+in\s+equity\b",
        ),
    )
)
_ITEM = re.compile(r"^item\s*(\d{1,2}[a-c]?)\s*[.:—–-]?\s*(.*)$", re.IGNORECASE)
_ITEM_TITLES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        ("mda", r"management['’]?s\s+discussion"),
        ("risk_factors", r"risk\s+factors"),
        ("market_risk", r"quantitative\s+and\s+qualitative"),
        ("selected_data", r"selected\s+(?:consolidated\s+)?financial\s+data|\[reserved\]"),
        ("controls", r"controls\s+and\s+procedures"),
        ("business", r"^business\b"),
        ("financial_statements", r"financial\s+statements"),
    )
)
_NOTES_HEAD = re.compile(r"^notes\s+to\s+(?:the\s+)?(?:condensed\s+)?consolidated", re.IGNORECASE)
_NOTE = re.compile(
    r"^(?:note\s+)?(\d{1,2})\s*[.:—–-]\s*([A-Za-z][^\n]{2,80})$|^note\s+(\d{1,2})$", re.IGNORECASE
)
_COVER = re.compile(r"securities\s+and\s+exchange\s+commission", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"\s\d{1,3}\s*$")
_NOT_HEADING = re.compile(r"see\s+accompanying|notes\s+to|refer\s+to|included\s+in", re.IGNORECASE)


@dataclass(frozen=True)
class PageSection:
    """A page's section (one of ``SECTIONS``, or "") and a title (a note's title, or the
    heading line that placed it)."""

    section: str = ""
    title: str = ""


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in (text or "").splitlines() if ln.strip()]


def statement_of(line: str) -> str:
    """The primary statement a heading line names ("" if none): the title, with at most
    ``HEADING_EXTRA_WORDS`` other words (a company name, "(continued)"), not a sentence."""
    line = line.strip()
    if len(line) > 100 or line.endswith(".") or _NOT_HEADING.search(line):
        return ""
    for name, pattern in _STATEMENT_PATTERNS:
        m = pattern.search(line)
        if m:
            extra = len((line[: m.start()] + " " + line[m.end() :]).split())
            return name if extra <= HEADING_EXTRA_WORDS else ""
    return ""


def _is_toc(lines: Sequence[str]) -> bool:
    items = sum(1 for ln in lines if _ITEM.match(ln))
    listed = {statement_of(ln) for ln in lines if _TRAILING_NUMBER.search(ln)} - {""}
    return items >= 5 or len(listed) >= 3


def _item_section(title: str) -> str:
    for name, pattern in _ITEM_TITLES:
        if pattern.search(title):
            return name
    return "item"


def page_sections(page_texts: Sequence[str]) -> list[PageSection]:
    """The section of every page of one document, in page order."""
    out: list[PageSection] = []
    current = PageSection()  # the item (or notes) the pages are in
    for i, text in enumerate(page_texts):
        lines = _lines(text)
        head = lines[:HEAD_LINES]
        if i < 3 and any(_COVER.search(ln) for ln in head) and not out_has(out, "cover"):
            out.append(PageSection("cover", ""))
            continue
        if _is_toc(lines):
            out.append(PageSection("toc", ""))
            continue
        found: PageSection | None = None
        for ln in head:
            m = _ITEM.match(ln)
            if m:
                rest = m.group(2) or ""
                name = _item_section(rest) if rest else "item"
                current = PageSection(name if name != "item" else "", f"Item {m.group(1)}")
                continue
            if _NOTES_HEAD.match(ln):
                current = PageSection("notes", "")
                continue
            kind = statement_of(ln)
            if kind and not _TRAILING_NUMBER.search(ln):
                found = PageSection(kind, ln)
                current = PageSection("financial_statements", "")
                break
            note = _NOTE.match(ln)
            if note and current.section in ("notes", "financial_statements"):
                title = (note.group(2) or "").strip()
                current = PageSection("notes", title)
                found = current
                break
        if found is None:
            section = current.section if current.section != "financial_statements" else ""
            found = PageSection(section, current.title if section == "notes" else "")
        out.append(found)
    return _keep_statement_block(out)


def _keep_statement_block(sections: list[PageSection]) -> list[PageSection]:
    """Statement headings count where statements stand together (``BLOCK`` pages either side
    hold at least three kinds of statement: the financial statements); elsewhere (an MD&A
    table, a condensed statement in a note) the page keeps the section it stands in."""
    kinds = [s.section if s.section in STATEMENTS else "" for s in sections]
    out = list(sections)
    carried = PageSection()
    for i, s in enumerate(sections):
        if s.section not in STATEMENTS:
            carried = s
            continue
        window = set(kinds[max(0, i - BLOCK) : i + BLOCK + 1]) - {""}
        if len(window) < 3:
            out[i] = PageSection(carried.section, s.title)
    return out


def out_has(sections: Sequence[PageSection], name: str) -> bool:
    return any(s.section == name for s in sections)
