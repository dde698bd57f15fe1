"""What a filing is, read from its text: company, form, fiscal period (``FilingFields``).

SEC filings open with a cover page that names the form ("FORM 10-K"), the period ("For the fiscal
year ended December 31, 2019", "For the quarterly period ended March 31, 2021"), the registrant
("ACTIVISION BLIZZARD, INC." above "(Exact name of registrant as specified in its charter)") and
its trading symbols. :func:`read_filing` reads those from a document's page texts (the text the
index stores, OCR included), falling back on the most frequent company line of the document
(statement headings, the signature page) when the cover shows the name only as a logo. A
document that is not a filing gives ``None``. Pure text work: no PDF access, microseconds a page.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

#: pages searched for the cover (some PDFs start with a blank or a title page)
COVER_PAGES = 3
#: pages of an earnings release searched for the quarter it reports
RELEASE_PAGES = 2
#: pages searched for the most frequent company line (fallback)
NAME_PAGES = 120

_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = rf"({_MONTHS})\s+(\d{{1,2}})\s*,?\s*((?:19|20)\d\d)"
_PERIOD = re.compile(
    rf"(fiscal\s+year|year|quarterly\s+period|quarter|period)\s+ended[\s\S]{{0,80}}?{_DATE}",
    re.IGNORECASE,
)
# an earnings release (an 8-K's exhibit) names its quarter in words or by the months it covers
_RELEASE_PERIOD = re.compile(
    rf"\b(?:(first|second|third|fourth)[\s-]+quarter|(three|six|nine|twelve)\s+months)"
    rf"(?:\s+(?:of\s+)?(?:fiscal\s+)?(?:year\s+)?((?:19|20)\d\d)\b|\s+ended\s+{_DATE})",
    re.IGNORECASE,
)
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4}
_FORM = re.compile(r"\bform\s+(10-K|10-Q|8-K|20-F|40-F|10-KT|10-QT)\b", re.IGNORECASE)
_RELEASE = re.compile(
    r"\b(?:reports?|announces?)\b[^\n]{0,80}\b(?:quarter|fiscal|full[- ]year|annual)\b"
    r"[^\n]{0,40}\bresults\b",
    re.IGNORECASE,
)
_EXACT_NAME = re.compile(r"\(\s*exact\s+name\s+of\s+(?:the\s+)?registrant", re.IGNORECASE)
_SUFFIX = (
    r"inc|incorporated|corporation|corp|company|co|plc|ltd|limited|llc|l\.p|n\.v|s\.a|ag|se|group"
)
_COMPANY_LINE = re.compile(
    rf"^((?:the\s+)?[A-Za-z][\w&.,'’\- ]{{1,60}}?\b(?:{_SUFFIX})\.?)"
    r"(?:\s+and\s+(?:its\s+)?(?:consolidated\s+)?subsidiar(?:y|ies)(?:\s+companies)?)?\s*$",
    re.IGNORECASE,
)
_NOT_NAME = re.compile(
    r"commission|file\s+number|securities|exchange|washington|form\s|report|registrant|"
    r"act\s+of|identification|jurisdiction|incorporation|transition|period|\d{3}",
    re.IGNORECASE,
)
_SYMBOLS = re.compile(
    r"section\s+12\s*\(\s*b[\s\S]{0,3000}?(?:section\s+12\s*\(\s*g|indicate\s+by\s+check)",
    re.IGNORECASE,
)
_TICKER = re.compile(r"^\s*([A-Z]{2,5})\s*$", re.MULTILINE)  # a symbol on a line of its own
_NOT_TICKER = frozenset(["NYSE", "NONE", "NA", "LLC", "INC"])


@dataclass
class FilingFields:
    """A filing's identity. ``form``: "10-K", "10-Q", "8-K", "earnings release", ...;
    ``fiscal_year``: the year the reported period ends in; ``quarter``: 1-4 for a quarterly
    report (the calendar quarter the period ends in), else 0; ``period_end``: ISO date."""

    company: str = ""
    form: str = ""
    fiscal_year: int = 0
    quarter: int = 0
    period_end: str = ""
    tickers: list[str] = field(default_factory=list)

    def as_row(self, doc_id: str) -> dict:
        return {"doc_id": doc_id, **asdict(self)}

    def label(self) -> str:
        """Short human label: ``"ACTIVISION BLIZZARD, INC. 10-K FY2019"``."""
        period = ""
        if self.fiscal_year:
            period = (
                f"{self.fiscal_year}Q{self.quarter}" if self.quarter else f"FY{self.fiscal_year}"
            )
        return " ".join(p for p in (self.company, self.form, period) if p)


def read_filing(page_texts: Sequence[str]) -> FilingFields | None:
    """The filing fields of a document from its page texts, or None when it is not a filing
    (no form on the cover and no company with a reporting period)."""
    cover = "\n".join(t or "" for t in page_texts[:COVER_PAGES])
    form = _form(cover)
    period = _PERIOD.search(cover)
    company = _registrant(cover) or _frequent_company(page_texts[:NAME_PAGES])
    if not form and not (company and period):
        return None
    out = FilingFields(company=company, form=form, tickers=_tickers(cover))
    if period:
        kind = period.group(1).lower()
        month = _MONTHS.split("|").index(period.group(2).lower()) + 1
        day, year = int(period.group(3)), int(period.group(4))
        out.fiscal_year = year
        out.period_end = f"{year:04d}-{month:02d}-{day:02d}"
        if form in ("10-Q", "10-QT") or "quarter" in kind:
            out.quarter = (month - 1) // 3 + 1
    elif form in ("8-K", "earnings release"):
        _release_period(out, "\n".join(t or "" for t in page_texts[:RELEASE_PAGES]))
    return out


def _release_period(out: FilingFields, text: str) -> None:
    """The quarter an earnings release reports: "fourth quarter of fiscal 2023" (the fiscal
    year as written) or "three months ended March 31, 2023" (the calendar quarter)."""
    m = _RELEASE_PERIOD.search(text)
    if not m:
        return
    ordinal, months, year, month_name, day, end_year = m.groups()
    if year:
        out.fiscal_year = int(year)
        out.quarter = _ORDINAL[ordinal.lower()] if ordinal else 0
        return
    month = _MONTHS.split("|").index(month_name.lower()) + 1
    out.fiscal_year = int(end_year)
    out.period_end = f"{int(end_year):04d}-{month:02d}-{int(day):02d}"
    if ordinal or (months and months.lower() == "three"):
        out.quarter = (month - 1) // 3 + 1


def _form(cover: str) -> str:
    m = _FORM.search(cover)
    if m:
        return m.group(1).upper()
    if _RELEASE.search(cover):
        return "earnings release"
    return ""


def _clean_name(line: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\s+([.,])", r"\1", line)).strip(" ,")


def _registrant(cover: str) -> str:
    """The line above "(Exact name of registrant ...)" when it looks like a name."""
    m = _EXACT_NAME.search(cover)
    if not m:
        return ""
    lines = [ln.strip() for ln in cover[: m.start()].splitlines() if ln.strip()]
    for line in reversed(lines[-3:]):
        if not _NOT_NAME.search(line) and len(line) <= 80 and re.search(r"[A-Za-z]{2}", line):
            return _clean_name(line)
    return ""


def _frequent_company(page_texts: Sequence[str]) -> str:
    """The most frequent company-like line ("THE COCA-COLA COMPANY AND SUBSIDIARIES" ->
    "THE COCA-COLA COMPANY") among the first pages; "" when none repeats."""
    counts: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    for text in page_texts:
        for raw in (text or "").splitlines()[:12]:
            line = raw.strip()
            m = _COMPANY_LINE.match(line)
            if not m or _NOT_NAME.search(line):
                continue
            name = _clean_name(m.group(1))
            key = name.lower()
            counts[key] += 1
            spelled.setdefault(key, name)
    if not counts:
        return ""
    key, n = counts.most_common(1)[0]
    return spelled[key] if n >= 2 else ""


def _tickers(cover: str) -> list[str]:
    m = _SYMBOLS.search(cover)
    if not m:
        return []
    found: list[str] = []
    for t in _TICKER.findall(m.group(0)):
        if t not in _NOT_TICKER and t not in found:
            found.append(t)
    return found[:3]
