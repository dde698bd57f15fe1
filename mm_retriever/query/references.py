"""Questions that name a figure, table or section: find the page where its caption or heading is.

"In Figure 5, what is the colour of ..." names the page the answer is on, but to BM25 "figure"
and a one-digit number are noise and to a dense encoder they carry no meaning. ``references``
reads such names from a question; ``caption_regex`` is the pattern of the named item's caption
("Figure 5:", "Fig. 5.", "Table 1-1") or numbered heading ("3.4 Self-Correction") at the start
of a line of page text, written in the regex dialect both Python's ``re`` and LanceDB's
``regexp_like`` (Rust ``regex``) accept, so the search runs inside the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "Figure 5", "figure 1", "Fig. 3", "Table 1-1", "Table 2", "Section 3.4", "Appendix B"
_REFERENCE = re.compile(
    r"\b(?P<kind>fig(?:ure)?\.?|table|section|appendix)\s*"
    r"(?P<label>\d+(?:[.-]\d+)*|[A-Z](?![\w']))",
    re.IGNORECASE,
)
# a label ends where no digit continues it: "5" must not match "5.2" or "51"
_LABEL_END = r"(?:$|[^0-9.\-]|[.\-](?:$|[^0-9]))"


@dataclass(frozen=True)
class Reference:
    """A named item of a document: ``kind`` figure | table | section | appendix, its label."""

    kind: str
    label: str


def references(text: str) -> list[Reference]:
    """The figures, tables, sections and appendices ``text`` names, in order, without repeats."""
    out: list[Reference] = []
    for m in _REFERENCE.finditer(text):
        word, label = m.group("kind").lower(), m.group("label")
        kind = "figure" if word.startswith("fig") else word
        if label.isalpha() and (kind != "appendix" or not label.isupper()):
            continue  # a letter label only for appendices ("Appendix B", not "table a ...")
        ref = Reference(kind, label)
        if ref not in out:
            out.append(ref)
    return out


def caption_regex(ref: Reference) -> str:
    """The pattern of ``ref``'s caption or heading at the start of a line of page text."""
    label = re.escape(ref.label).replace(r"\-", "-")
    label = label.replace("-", r"\s*[-.]\s*")  # "Table 1-1" is also printed "Table 1.1"
    if ref.kind == "figure":
        return rf"(?im)^\s*(?:figure|fig\.?)\s*{label}{_LABEL_END}"
    if ref.kind == "table":
        return rf"(?im)^\s*table\s*{label}{_LABEL_END}"
    if ref.kind == "appendix":
        return rf"(?im)^\s*appendix\s*{label}(?:$|[^a-z0-9])"
    # a numbered heading: "3.4 Self-Correction" or "Section 3.4: ..."
    return rf"(?m)^\s*(?:(?i:section)\s*)?{label}[.:]?\s+[A-Z]"


# any caption or numbered heading of a kind at a line start (for telling listings apart)
_ANY_LABEL = r"(\d+(?:[.-]\d+)*)"
_KIND_LINES = {
    "figure": re.compile(rf"(?im)^\s*(?:figure|fig\.?)\s*{_ANY_LABEL}"),
    "table": re.compile(rf"(?im)^\s*table\s*{_ANY_LABEL}"),
    "appendix": re.compile(r"(?im)^\s*appendix\s*([A-Z0-9]+)\b"),
    "section": re.compile(r"(?m)^\s*(?:(?i:section)\s*)?(\d+\.\d+(?:\.\d+)*)[.:]?\s+[A-Z]"),
}
#: a page that starts this many lines with different labels of one kind is a listing (a table
#: of contents, a list of figures or tables), not the item itself
LISTING_LABELS = 5


def is_listing(ref: Reference, text: str) -> bool:
    """Whether ``text`` lists many items of ``ref``'s kind (a table of contents, a list of
    figures) rather than holding the item: such pages are never pinned."""
    labels = {m.group(1).lower() for m in _KIND_LINES[ref.kind].finditer(text)}
    return len(labels) >= LISTING_LABELS


def matches(ref: Reference, text: str) -> bool:
    """Whether ``text`` holds ``ref``'s caption or heading (the store's test, in Python)."""
    return re.search(caption_regex(ref), text) is not None
