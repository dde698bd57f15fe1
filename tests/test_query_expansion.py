"""Financial-term expansion: a ratio's name brings the line items it is computed from."""

from __future__ import annotations

import pytest

from mm_retriever.query.query_expansion import FINANCIAL_TERMS, expand_query, financial_expansion


@pytest.mark.parametrize(
    ("question", "must_have"),
    [
        ("What is current ratio in FY2021 for Nike?", ["total current assets", "balance sheets"]),
        ("What is  cash_ratio in FY2021?", ["cash and cash equivalents", "current liabilities"]),
        ("what is the FY2021 inventory turnover ratio?", ["cost of sales", "inventories"]),
        ("What is receivables turnover?", ["accounts receivable", "revenues"]),
        ("Interest Coverage Ratio for 2019?", ["interest expense", "operating income"]),
        ("what is the 3 year average capex to revenue ratio", ["capital expenditures"]),
        ("effective tax rate of Best Buy", ["provision for income taxes"]),
        ("basic earnings per ordinary share", ["per share", "weighted-average shares"]),
        ("What is ROE?", ["total shareholders equity", "net income"]),
        ("R&D to asset ratio", ["research and development"]),
        ("What was COGS in 2022?", ["cost of goods sold"]),
        ("How much PP&E did it hold?", ["property plant and equipment"]),
    ],
)
def test_metrics_bring_their_line_items(question: str, must_have: list[str]) -> None:
    expanded = expand_query(question)
    assert expanded.startswith(question)
    for words in must_have:  # each word once: the expansion is a bag of words
        assert set(words.split()) <= set(expanded.split()), (question, expanded)


@pytest.mark.parametrize(
    "question",
    [
        "How many green bars appear in Figure 1?",
        "What percentage of Republicans favor automatic voter registration?",
        "Which deposits are made in the cash register?",  # "cash" alone is no metric
        "the roadmap of the deoxyribonucleic acid epsilon",  # no 'roa'/'eps' inside words
        "a quickest ratio of two",
    ],
)
def test_other_questions_come_back_unchanged(question: str) -> None:
    assert financial_expansion(question) == ""
    assert expand_query(question) == question


def test_words_are_added_once_even_when_several_metrics_match() -> None:
    extra = financial_expansion("current ratio and quick ratio and cash ratio")
    words = extra.split()
    assert len(words) == len(set(words))
    assert "inventories" not in words


def test_every_term_compiles_and_matches_its_plain_name() -> None:
    names = {
        "current ratio", "quick ratio", "cash ratio", "working capital", "debt to equity",
        "debt ratio", "capitalization ratio", "equity multiplier", "interest coverage",
        "interest to average total debt", "inventory turnover", "receivables turnover",
        "payables turnover", "cash conversion cycle", "fixed asset turnover", "asset turnover",
        "gross margin", "gross profit to total assets", "operating margin", "net profit margin",
        "ebitda", "return on assets", "return on equity", "return on capital employed",
        "invested capital", "effective tax rate", "earnings per share", "payout ratio",
        "research and development", "sg&a", "capex", "free cash flow",
        "book value per share", "operating cash flow ratio", "net debt", "total debt",
        "operating cash flow", "ebit", "dividend yield", "p/e ratio", "price to earnings",
        "fixed charge coverage", "cogs", "d&a", "pp&e", "a/r", "a/p",
    }  # fmt: skip
    matched = {n for n in names if financial_expansion(f"What is the {n} in 2020?")}
    assert matched == names
    assert all(term.pattern().pattern for term in FINANCIAL_TERMS)
