"""What a question asks of a filing: statements, fiscal years, quarter, form, and which company.

"Using the balance sheet, what is Nike's FY2019 working capital?" names a statement (the balance
sheet), a fiscal year (2019) and a company (Nike). :func:`read_question` reads the statements
named outright ("statement of financial position", "P&L", "cash flow statement") and those the
question's metrics need (the glossary of :mod:`mm_retriever.query.query_expansion`: "current ratio"
-> balance sheet, "EBITDA" -> income statement and cash flows), the years ("FY2019", "fiscal
2019", "2021 Q1") and the form. :func:`company_score` says how well a question names a filing's
company (its name words, its trading symbol, or its initials: "AMD"). Pure text work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mm_retriever.query.query_expansion import (
    BALANCE_SHEET,
    CASH_FLOWS,
    FINANCIAL_TERMS,
    INCOME_STATEMENT,
)

_NAMED: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.IGNORECASE))
    for name, rx in (
        (
            "balance_sheet",
            r"\bbalance[\s-]+sheets?\b|\bstatements?\s+of\s+(?:consolidated\s+)?financial\s+"
            r"(?:position|condition)\b",
        ),
        (
            "income_statement",
            r"\bincome\s+statements?\b|\bstatements?\s+of\s+(?:consolidated\s+)?"
            r"(?:income|operations|earnings)\b|\bp\s*&\s*l\b|\bprofit\s+(?:and|&)\s+loss\b",
        ),
        (
            "cash_flow",
            r"\bcash[\s-]*flows?\s+statements?\b|\bstatements?\s+of\s+(?:consolidated\s+)?"
            r"cash[\s-]*flows?\b|\bfree\s+cash[\s-]*flows?\b|\bcash\s+flows?\s+from\b|"
            r"\b(?:operating|investing|financing)\s+activities\b",
        ),
        (
            "equity",
            r"\bstatements?\s+of\s+(?:consolidated\s+)?(?:changes\s+in\s+)?"
            r"(?:(?:share|stock)holders['’]?\s+)?equity\b",
        ),
    )
)
_IMPLIED = {BALANCE_SHEET: "balance_sheet", INCOME_STATEMENT: "income_statement"}
_IMPLIED[CASH_FLOWS] = "cash_flow"
_TERMS = tuple(
    (term.pattern(), tuple(s for phrase, s in _IMPLIED.items() if phrase in term.expansion))
    for term in FINANCIAL_TERMS
)
_YEAR = re.compile(
    r"(?<![\d$.,])(?:fy\s*'?|fiscal\s+(?:year\s+)?)?((?:19|20)\d\d)(?![\d%,.]\d)", re.I
)
_FY_SHORT = re.compile(r"\bfy\s*'?(\d\d)\b", re.IGNORECASE)
_QUARTER = re.compile(
    r"\bq([1-4])\b|\b(first|second|third|fourth)\s+(?:fiscal\s+)?quarter\b", re.IGNORECASE
)
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4}
_FORM = re.compile(r"\b(10-?k|10-?q|8-?k)\b|\b(annual|quarterly)\s+report\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:&[a-z0-9]+)?")
#: words of a company name that do not name it
_GENERIC = frozenset(
    [
        "the",
        "inc",
        "incorporated",
        "corporation",
        "corp",
        "company",
        "co",
        "companies",
        "plc",
        "ltd",
        "limited",
        "llc",
        "lp",
        "l",
        "p",
        "n",
        "v",
        "s",
        "a",
        "ag",
        "se",
        "group",
        "holdings",
        "holding",
        "and",
        "of",
        "&",
        "international",
        "systems",
        "subsidiaries",
        "subsidiary",
        "stores",
    ]
)


@dataclass(frozen=True)
class FilingQuestion:
    """``statements``: wanted statements (named ones first); ``years``: fiscal years named,
    ascending; ``quarter``: 1-4 or 0; ``form``: "10-K", "10-Q", "8-K" or ""."""

    statements: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    quarter: int = 0
    form: str = ""

    @property
    def year(self) -> int:
        """The latest year named (the filing that reports it is the latest that can): 0 if none."""
        return max(self.years, default=0)


def read_question(text: str) -> FilingQuestion:
    """The statements, years, quarter and form ``text`` asks about."""
    text = text or ""
    wanted: list[str] = [name for name, rx in _NAMED if rx.search(text)]
    for pattern, statements in _TERMS:
        if statements and pattern.search(text):
            wanted += [s for s in statements if s not in wanted]
    years = {int(y) for y in _YEAR.findall(text)}
    years |= {2000 + int(y) for y in _FY_SHORT.findall(text)}
    quarter = 0
    q = _QUARTER.search(text)
    if q:
        quarter = int(q.group(1)) if q.group(1) else _ORDINAL[q.group(2).lower()]
    form = ""
    f = _FORM.search(text)
    if f:
        if f.group(1):
            raw = f.group(1).upper().replace("-", "")
            form = f"{raw[:-1]}-{raw[-1]}"
        else:
            form = "10-K" if f.group(2).lower() == "annual" else "10-Q"
    elif quarter:
        form = "10-Q"
    return FilingQuestion(tuple(dict.fromkeys(wanted)), tuple(sorted(years)), quarter, form)


def _words(text: str) -> list[str]:
    text = re.sub(r"['’]s\b", "", text.lower())
    return _WORD.findall(text)


@lru_cache(maxsize=4096)
def company_keys(company: str) -> tuple[tuple[str, ...], str, str]:
    """(distinctive name words, the words joined, initials) of a company name:
    "ADVANCED MICRO DEVICES, INC." -> (("advanced", "micro", "devices"), "advancedmicrodevices",
    "amd"); "THE COCA-COLA COMPANY" -> (("coca", "cola"), "cocacola", "cc")."""
    words = tuple(w for w in _words(company.replace("-", " ")) if w not in _GENERIC)
    initials = "".join(w[0] for w in words) if len(words) >= 2 else ""
    return words, "".join(words), initials


def company_score(question: str, company: str, tickers: tuple[str, ...] | list[str] = ()) -> float:
    """How well ``question`` names the company: 1 when it holds the name's first distinctive
    word and at least half of them ("Adobe" for Adobe Systems), all of them written together
    ("Walmart", "CocaCola"), its trading symbol or its initials as a word of capitals ("AMD");
    else the share of its words found when at least half are; 0 otherwise."""
    words, joined, initials = company_keys(company or "")
    raw_caps, found, squashed = _question_keys(question or "")
    if any(t in raw_caps for t in tickers) or (initials and initials.upper() in raw_caps):
        return 1.0
    if not words:
        return 0.0
    if len(words) > 1 and (joined in found or (len(joined) >= 6 and joined in squashed)):
        return 1.0
    matched = sum(w in found for w in words)
    if 2 * matched < len(words):  # "American" alone does not name American Water Works
        return 0.0
    return 1.0 if words[0] in found else matched / len(words)


@lru_cache(maxsize=256)
def _question_keys(question: str) -> tuple[frozenset[str], frozenset[str], str]:
    """(words in capitals, lower-case words, all words run together) of a question."""
    words = _words(question)
    caps = frozenset(re.findall(r"\b[A-Z][A-Z0-9&]{1,5}\b", question))
    return caps, frozenset(words), "".join(words)


def period_score(question: FilingQuestion, fiscal_year: int, quarter: int, form: str) -> float:
    """How well a filing's period fits the question: 1 for the latest year named (and its
    quarter, for a quarterly question), 0.5 for a filing one or two years later (it repeats
    the year as a comparative column) or the right year in another form; 0 otherwise, and 0
    when the question names no year."""
    if not question.year or not fiscal_year:
        return 0.0
    score = 0.0
    if fiscal_year == question.year:
        score = 1.0
        if question.quarter and quarter and quarter != question.quarter:
            score = 0.5
    elif 0 < fiscal_year - question.year <= 2:
        score = 0.5
    if question.form and form and question.form != form:
        score *= 0.5
    return score
