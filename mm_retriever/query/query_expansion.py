"""Query expansion with financial-statement knowledge: a ratio's name -> the line items it needs.

A question such as "What is the current ratio in FY2021?" names a ratio that appears nowhere in a
filing; the numbers it needs sit in the financial statements under their line items ("Total
current assets", "Total current liabilities" on the balance sheet). Lexical and dense retrieval
both miss that step. ``expand_query`` appends, for every standard financial metric named in the
question, the line items (and the statement) it is computed from. The glossary holds textbook
definitions (CFA / accounting-course formulas) under their standard names and spellings (snake
case too: "cash_ratio"); typos are not listed. A question without such a term comes back
unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BALANCE_SHEET = "balance sheets"
INCOME_STATEMENT = "statements of operations income earnings"
CASH_FLOWS = "statements of cash flows"

_CURRENT = "total current assets total current liabilities"
_CASH = "cash and cash equivalents short-term investments"
_DEBT = "long-term debt short-term borrowings"
_EQUITY = "total shareholders equity"
_REVENUE = "revenues net sales"
_COGS = "cost of sales"
_OPERATING_INCOME = "operating income"
_NET_INCOME = "net income earnings"
_PPE = "property and equipment net"


@dataclass(frozen=True)
class FinancialTerm:
    """A metric's names (regular expression, case-insensitive) and the words it expands to."""

    names: str
    expansion: str

    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"(?<![\w-])(?:{self.names})(?![\w-])", re.IGNORECASE)


# Ordered from specific to general; a question can match several.
FINANCIAL_TERMS: tuple[FinancialTerm, ...] = (
    # liquidity
    FinancialTerm(r"current[\s_-]+ratio", f"{_CURRENT} {BALANCE_SHEET}"),
    FinancialTerm(
        r"quick[\s_-]+ratio|acid[\s_-]+test(?:[\s_-]+ratio)?",
        f"{_CASH} accounts receivable total current liabilities {BALANCE_SHEET}",
    ),
    FinancialTerm(r"cash[\s_-]+ratio", f"{_CASH} total current liabilities {BALANCE_SHEET}"),
    FinancialTerm(r"working[\s_-]+capital", f"{_CURRENT} {BALANCE_SHEET}"),
    FinancialTerm(
        r"operating[\s_-]+cash[\s_-]+flow[\s_-]+ratio",
        f"net cash provided by operating activities total current liabilities {CASH_FLOWS}",
    ),
    # leverage and solvency
    FinancialTerm(
        r"debt[\s_-]+(?:to|/)[\s_-]+equity(?:[\s_-]+ratio)?|d/e[\s_-]+ratio|gearing(?:[\s_-]+ratio)?",
        f"{_DEBT} {_EQUITY} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"debt[\s_-]+(?:to|/)[\s_-]+(?:total[\s_-]+)?assets?(?:[\s_-]+ratio)?|debt[\s_-]+ratio",
        f"total liabilities {_DEBT} total assets {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"(?:total[\s_-]+)?capitali[sz]ation[\s_-]+ratio|debt[\s_-]+to[\s_-]+capital(?:[\s_-]+ratio)?",
        f"{_DEBT} {_EQUITY} {BALANCE_SHEET}",
    ),
    FinancialTerm(r"equity[\s_-]+multiplier", f"total assets {_EQUITY} {BALANCE_SHEET}"),
    FinancialTerm(
        r"interest[\s_-]+coverage(?:[\s_-]+ratio)?|times[\s_-]+interest[\s_-]+earned",
        f"{_OPERATING_INCOME} interest expense {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"interest[\s_-]+to[\s_-]+(?:average[\s_-]+)?(?:total[\s_-]+)?debt|cost[\s_-]+of[\s_-]+debt",
        f"interest expense {_DEBT} {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    # activity (turnover) and the cash conversion cycle
    FinancialTerm(
        r"inventor(?:y|ies)[\s_-]+turnover|days[\s_-]+(?:in[\s_-]+)?inventory(?:[\s_-]+outstanding)?|dio",
        f"{_COGS} inventories {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"(?:accounts[\s_-]+)?receivables?[\s_-]+turnover|days[\s_-]+sales[\s_-]+outstanding|dso",
        f"{_REVENUE} accounts receivable {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"(?:accounts[\s_-]+)?payables?[\s_-]+turnover|days[\s_-]+payables?(?:[\s_-]+outstanding)?|dpo",
        f"{_COGS} accounts payable {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"cash[\s_-]+conversion[\s_-]+cycle|operating[\s_-]+cycle",
        f"{_COGS} {_REVENUE} inventories accounts receivable accounts payable "
        f"{INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"fixed[\s_-]+assets?[\s_-]+turnover(?:[\s_-]+ratio)?",
        f"{_REVENUE} {_PPE} {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"(?:total[\s_-]+)?assets?[\s_-]+turnover(?:[\s_-]+ratio)?",
        f"{_REVENUE} total assets {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    # profitability
    FinancialTerm(
        r"gross[\s_-]+(?:profit[\s_-]+)?margins?",
        f"gross profit {_REVENUE} {_COGS} {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"gross[\s_-]+profit[\s_-]+to[\s_-]+(?:total[\s_-]+)?assets",
        f"gross profit total assets {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"operating[\s_-]+(?:profit[\s_-]+)?margins?|ebit[\s_-]+margins?",
        f"{_OPERATING_INCOME} {_REVENUE} {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"(?:net[\s_-]+)?profit[\s_-]+margins?|net[\s_-]+margins?",
        f"{_NET_INCOME} {_REVENUE} {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"ebitda(?:[\s_-]+margins?)?",
        f"{_OPERATING_INCOME} depreciation and amortization {INCOME_STATEMENT} {CASH_FLOWS}",
    ),
    FinancialTerm(
        r"return[\s_-]+on[\s_-]+(?:average[\s_-]+)?(?:total[\s_-]+)?assets|roa",
        f"{_NET_INCOME} total assets {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"return[\s_-]+on[\s_-]+(?:average[\s_-]+)?(?:shareholders'?[\s_-]+|stockholders'?[\s_-]+)?"
        r"equity|roe",
        f"{_NET_INCOME} {_EQUITY} {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"return[\s_-]+on[\s_-]+capital[\s_-]+employed|roce",
        f"{_OPERATING_INCOME} total assets total current liabilities "
        f"{INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"return[\s_-]+on[\s_-]+invested[\s_-]+capital|roic|invested[\s_-]+capital",
        f"{_OPERATING_INCOME} income tax {_DEBT} {_EQUITY} {INCOME_STATEMENT} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"effective[\s_-]+(?:income[\s_-]+)?tax[\s_-]+(?:rate|ratio)",
        f"provision for income taxes income tax expense earnings before income taxes "
        f"{INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"(?:basic|diluted)?[\s_-]*earnings[\s_-]+per[\s_-]+(?:ordinary[\s_-]+|common[\s_-]+)?share|eps",
        f"{_NET_INCOME} per share basic diluted weighted-average shares {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"(?:dividend[\s_-]+)?payout[\s_-]+ratio",
        f"dividends declared {_NET_INCOME} {INCOME_STATEMENT} {CASH_FLOWS}",
    ),
    FinancialTerm(
        r"r\s*&\s*d|research[\s_-]+and[\s_-]+development",
        "research and development product development expenses",
    ),
    FinancialTerm(
        r"sg\s*&\s*a",
        f"selling general and administrative expenses {INCOME_STATEMENT}",
    ),
    # cash flow
    FinancialTerm(
        r"capex|capital[\s_-]+expenditures?",
        "capital expenditures purchases of property and equipment investing activities "
        f"{CASH_FLOWS}",
    ),
    FinancialTerm(
        r"free[\s_-]+cash[\s_-]+flows?",
        f"net cash provided by operating activities capital expenditures {CASH_FLOWS}",
    ),
    FinancialTerm(
        r"book[\s_-]+value[\s_-]+per[\s_-]+share",
        f"{_EQUITY} shares outstanding {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"net[\s_-]+debt|total[\s_-]+debt",
        f"{_DEBT} current portion of long-term debt {_CASH} {BALANCE_SHEET}",
    ),
    FinancialTerm(
        r"operating[\s_-]+cash[\s_-]+flows?|cash[\s_-]+flows?[\s_-]+from[\s_-]+operations"
        r"|cash[\s_-]+from[\s_-]+operations",
        f"net cash provided by operating activities {CASH_FLOWS}",
    ),
    FinancialTerm(
        r"ebit",
        f"{_OPERATING_INCOME} earnings before interest and taxes {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"dividends?[\s_-]+(?:yield|per[\s_-]+share)|(?:dividend[\s_-]+)?retention[\s_-]+ratio",
        f"dividends declared per share {_NET_INCOME} {CASH_FLOWS}",
    ),
    FinancialTerm(
        r"p/?e[\s_-]+ratio|price[\s_-]+(?:to|/)[\s_-]+earnings(?:[\s_-]+ratio)?",
        f"{_NET_INCOME} per share basic diluted {INCOME_STATEMENT}",
    ),
    FinancialTerm(
        r"fixed[\s_-]+charges?[\s_-]+coverage(?:[\s_-]+ratio)?",
        f"{_OPERATING_INCOME} interest expense lease costs {INCOME_STATEMENT}",
    ),
    # abbreviations of line items
    FinancialTerm(r"cogs", f"{_COGS} cost of goods sold cost of revenues {INCOME_STATEMENT}"),
    FinancialTerm(r"d\s*&\s*a", "depreciation and amortization"),
    FinancialTerm(r"pp\s*&\s*e", f"property plant and equipment {BALANCE_SHEET}"),
    FinancialTerm(r"a/r", "accounts receivable"),
    FinancialTerm(r"a/p", "accounts payable"),
)

_PATTERNS = tuple((term.pattern(), term.expansion) for term in FINANCIAL_TERMS)


def financial_expansion(text: str) -> str:
    """The line items and statements of every financial metric ``text`` names ("" if none)."""
    words: list[str] = []
    seen: set[str] = set()
    for pattern, expansion in _PATTERNS:
        if pattern.search(text):
            for word in expansion.split():
                if word not in seen:
                    seen.add(word)
                    words.append(word)
    return " ".join(words)


def expand_query(text: str) -> str:
    """``text`` with the line items of the financial metrics it names appended."""
    extra = financial_expansion(text)
    return f"{text} {extra}" if extra else text
