"""Filings: what a filing and its pages are (read at ingest), what a question asks, the prior."""

from __future__ import annotations

import pymupdf
import pytest
from pdfgen import FILING_PAGES, make_filing_pdf, make_sample_pdf
from shared_fixtures import bm25_index

from mm_retriever.index import MultimodalIndex
from mm_retriever.index.filing_fields import backfill_filing_fields
from mm_retriever.ingest.filing import read_filing
from mm_retriever.ingest.page_sections import page_sections, statement_of
from mm_retriever.query.filing_question import company_score, period_score, read_question
from mm_retriever.ranking.filing_prior import FILINGS, PAGE_SECTIONS, FilingPrior, rerank

QUESTION = (
    "According to the balance sheet, how much total current assets did Nike have at the end "
    "of FY2019?"
)


def _texts(path) -> list[str]:
    with pymupdf.open(path) as doc:
        return [page.get_text() for page in doc]


def test_read_filing_from_the_cover(tmp_path) -> None:
    ten_k = read_filing(
        _texts(make_filing_pdf(tmp_path / "k.pdf", "NIKE, INC.", 2019, ticker="NKE"))
    )
    assert ten_k is not None
    assert (ten_k.company, ten_k.form, ten_k.fiscal_year, ten_k.quarter) == (
        "NIKE, INC.",
        "10-K",
        2019,
        0,
    )
    assert ten_k.period_end == "2019-05-31" and ten_k.tickers == ["NKE"]
    assert ten_k.label() == "NIKE, INC. 10-K FY2019"
    # a 10-Q whose cover shows the name only as a logo: the statements' heading names it
    ten_q = read_filing(
        _texts(
            make_filing_pdf(
                tmp_path / "q.pdf",
                "JPMORGAN CHASE & CO.",
                2021,
                form="10-Q",
                period_end="March 31",
                name_on_cover=False,
            )
        )
    )
    assert ten_q is not None
    assert (ten_q.company, ten_q.form, ten_q.fiscal_year, ten_q.quarter) == (
        "JPMORGAN CHASE & CO.",
        "10-Q",
        2021,
        1,
    )
    assert ten_q.label() == "JPMORGAN CHASE & CO. 10-Q 2021Q1"
    # a report that is no filing has no filing fields
    assert read_filing(_texts(make_sample_pdf(tmp_path / "s.pdf", ["Zorblax sightings."]))) is None


def test_read_filing_of_an_earnings_release() -> None:
    cover = (
        "UNITED STATES\nSECURITIES AND EXCHANGE COMMISSION\nFORM 8-K\nCURRENT REPORT\n"
        "Date of Report (Date of earliest event reported): April 25, 2023\nACME TOOLS, INC.\n"
        "(Exact name of registrant as specified in its charter)\nTrading Symbol(s)\nACME\n"
        "Securities registered pursuant to Section 12(g) of the Act: None"
    )
    release = "ACME TOOLS REPORTS FIRST QUARTER 2023 RESULTS\nNet sales for the three months "
    release += "ended March 31, 2023 rose 4%."
    fields = read_filing([cover, release])
    assert fields is not None
    assert (fields.company, fields.form, fields.fiscal_year, fields.quarter) == (
        "ACME TOOLS, INC.",
        "8-K",
        2023,
        1,
    )
    worded = read_filing([cover, "Results for the fourth quarter of fiscal 2022 were strong."])
    assert worded is not None and (worded.fiscal_year, worded.quarter) == (2022, 4)


def test_page_sections_of_a_filing(tmp_path) -> None:
    sections = page_sections(_texts(make_filing_pdf(tmp_path / "k.pdf", "NIKE, INC.", 2019)))
    assert [s.section for s in sections] == [name for name, _ in FILING_PAGES]
    assert sections[10].title == "INVENTORIES"  # a note keeps its title
    # the MD&A sentence naming the balance sheets is no statement heading; a heading is
    assert statement_of("Our Consolidated Balance Sheets show total current assets.") == ""
    assert statement_of("NIKE, Inc. Consolidated Statements of Income") == "income_statement"
    assert statement_of("Consolidated Statements of Cash Flows (continued)") == "cash_flow"
    assert statement_of("Consolidated Balance Sheets 57") == "balance_sheet"  # (a TOC line)


def test_page_sections_need_the_statements_together() -> None:
    # one statement heading far from the others (a table in the MD&A) keeps the MD&A section
    pages = ["Item 7. Management's Discussion and Analysis", "CONSOLIDATED BALANCE SHEETS"]
    pages += ["More discussion."] * 10
    pages += [
        f"{t}\nrows" for t in ("STATEMENTS OF INCOME", "BALANCE SHEETS", "STATEMENTS OF CASH FLOWS")
    ]
    got = [s.section for s in page_sections(pages)]
    assert got[1] == "mda"
    assert got[-3:] == ["income_statement", "balance_sheet", "cash_flow"]


def test_read_question() -> None:
    q = read_question(QUESTION)
    assert q.statements == ("balance_sheet",) and q.years == (2019,) and q.year == 2019
    # statements a metric needs come from the glossary; the latest year is the filing's
    q = read_question("What is the FY2021 inventory turnover ratio? Average FY2020 and FY2021.")
    assert set(q.statements) == {"income_statement", "balance_sheet"} and q.year == 2021
    q = read_question("Using the P&L statement and the statement of cash flows, what is D&A?")
    assert q.statements == ("income_statement", "cash_flow") and q.years == ()
    q = read_question("In 2022 Q2, which of JPM's segments had the highest net income?")
    assert (q.year, q.quarter, q.form) == (2022, 2, "10-Q")
    assert read_question("Revenue in the second fiscal quarter of 2023?").quarter == 2
    assert read_question("How many students enrolled in 2019?").statements == ()


def test_company_score() -> None:
    assert company_score("What is Nike's FY2019 revenue?", "NIKE, Inc.") == 1.0
    assert company_score("ROA for Coca Cola?", "THE COCA-COLA COMPANY") == 1.0
    assert company_score("AMD's D&A margin?", "ADVANCED MICRO DEVICES, INC.") == 1.0  # initials
    assert company_score("JPM's net revenue?", "JPMorgan Chase & Co.", ["JPM"]) == 1.0  # symbol
    assert company_score("Walmart's DPO?", "WAL-MART STORES, INC.") == 1.0  # written together
    assert company_score("What is Nike's revenue?", "ADOBE INC.") == 0.0
    assert company_score("Adobe's FY2015 margin?", "ADOBE SYSTEMS INCORPORATED") == 1.0
    assert company_score("How many American adults?", "AMERICAN WATER WORKS COMPANY") == 0.0
    assert company_score("the amd chip", "ADVANCED MICRO DEVICES, INC.") == 0.0  # not capitals


def test_period_score() -> None:
    fy19 = read_question("FY2019 capex?")
    assert period_score(fy19, 2019, 0, "10-K") == 1.0
    assert period_score(fy19, 2020, 0, "10-K") == 0.5  # repeats FY2019 as a comparative
    assert period_score(fy19, 2018, 0, "10-K") == 0.0
    q1 = read_question("JPM in 2021 Q1?")
    assert period_score(q1, 2021, 1, "10-Q") == 1.0
    assert period_score(q1, 2021, 2, "10-Q") == 0.5
    assert period_score(read_question("What is capex?"), 2019, 0, "10-K") == 0.0


@pytest.fixture(scope="module")
def filings(tmp_path_factory):
    root = tmp_path_factory.mktemp("filings")
    files = {
        "nike18": make_filing_pdf(root / "docs" / "n18.pdf", "NIKE, INC.", 2018, ticker="NKE"),
        "nike19": make_filing_pdf(root / "docs" / "n19.pdf", "NIKE, INC.", 2019, ticker="NKE"),
        "adobe19": make_filing_pdf(
            root / "docs" / "a19.pdf", "ADOBE INC.", 2019, ticker="ADBE", period_end="November 29"
        ),
    }
    idx = bm25_index(root / "idx")
    idx.add(list(files.values()))
    by_file = {d["source"].rsplit("/", 1)[-1]: d["doc_id"] for d in idx.documents()}
    return idx, {k: by_file[p.name] for k, p in files.items()}


def test_ingest_writes_filings_and_sections(filings) -> None:
    idx, ids = filings
    rows = {r["doc_id"]: r for r in idx.store.query(FILINGS).to_pylist()}
    assert (
        rows[ids["nike19"]]["fiscal_year"] == 2019
        and rows[ids["adobe19"]]["company"] == "ADOBE INC."
    )
    sections = idx.store.query(PAGE_SECTIONS, f"doc_id = '{ids['nike19']}'").to_pylist()
    by_page = {r["page_index"]: r["section"] for r in sections}
    assert by_page == {i: s for i, (s, _) in enumerate(FILING_PAGES)}


def test_prior_finds_the_filing_then_the_statement(filings) -> None:
    idx, ids = filings
    balance_19 = (ids["nike19"], 6)
    plain = idx.retriever(filing_prior=None).retrieve(QUESTION, k=5)
    ranked = idx.retriever().retrieve(QUESTION, k=5)
    # every filing has the same words; the prior picks Nike's FY2019 balance sheet
    assert (ranked[0].doc_id, ranked[0].page_index) == balance_19
    assert (plain[0].doc_id, plain[0].page_index) != balance_19
    assert ranked[0].filing == "NIKE, INC. 10-K FY2019" and ranked[0].section == "balance_sheet"
    shown = ranked[0].to_dict()  # what `search --json` and the server return
    assert (shown["filing"], shown["section"]) == ("NIKE, INC. 10-K FY2019", "balance_sheet")
    assert ranked[0].leg_scores["section"] == 1.0 and ranked[0].leg_scores["filing"] == 2.0
    # FY2018 capex stands in the FY2019 filing too: the FY2018 one leads, the FY2019 one next
    docs = [p.doc_id for p in idx.retriever().retrieve("Nike FY2018 cash flow statement", k=3)]
    assert docs[0] == ids["nike18"] and ids["adobe19"] not in docs
    # within one document a metric's statements come first: inventory turnover -> both
    only = {"doc_id": ids["nike19"]}
    q = "What is Nike's FY2019 inventory turnover ratio?"
    top2 = {p.page_index for p in idx.retriever().retrieve(q, k=2, filters=only)}
    assert top2 == {5, 6}  # the income statement and the balance sheet
    # a page filter holds: no statement page outside it joins
    narrow = {**only, "page_index": {"lte": 4}}
    assert all(p.page_index <= 4 for p in idx.retriever().retrieve(q, k=5, filters=narrow))


def test_prior_leaves_other_questions_alone(filings) -> None:
    idx, _ = filings
    q = "competition and currency rates"
    with_prior = [(p.doc_id, p.page_index, p.score) for p in idx.retriever().retrieve(q, k=5)]
    without = [
        (p.doc_id, p.page_index, p.score) for p in idx.retriever(filing_prior=None).retrieve(q, k=5)
    ]
    assert with_prior == without
    with pytest.raises(ValueError, match=">= 0"):
        FilingPrior(-1.0)
    fi = FilingPrior().index(idx.store)  # no candidates (a leg found nothing): nothing to do
    assert rerank([], fi, QUESTION, read_question(QUESTION), FilingPrior()) == []


def test_backfill_of_an_older_index(filings, tmp_path) -> None:
    idx, ids = filings
    store = idx.store
    before = store.count(PAGE_SECTIONS)
    for name in (FILINGS, PAGE_SECTIONS):  # an index written before the tables existed
        store.table(name).delete("true")
    assert backfill_filing_fields(store) == len(ids)
    assert store.count(PAGE_SECTIONS) == before and store.count(FILINGS) == len(ids)
    assert backfill_filing_fields(store) == 0  # nothing left to read


def test_migrate_reads_the_fields_of_an_older_index(tmp_path) -> None:
    idx = bm25_index(tmp_path / "idx")
    idx.add([make_filing_pdf(tmp_path / "n19.pdf", "NIKE, INC.", 2019, ticker="NKE")])
    for name in (FILINGS, PAGE_SECTIONS):  # as an index written before the tables existed
        idx.store.db.drop_table(name)
    tables = [t for t in idx.manifest()["tables"] if t not in (FILINGS, PAGE_SECTIONS)]
    idx.store.write_manifest({"tables": tables})
    old = MultimodalIndex.open(tmp_path / "idx")
    assert old.retriever().retrieve(QUESTION, k=1)[0].filing == ""  # nothing read yet
    report = old.migrate()
    assert report.filing_fields == 1
    assert {FILINGS, PAGE_SECTIONS} <= set(old.manifest()["tables"])
    again = MultimodalIndex.open(tmp_path / "idx").retriever().retrieve(QUESTION, k=1)[0]
    assert (again.filing, again.section, again.page_index) == (
        "NIKE, INC. 10-K FY2019",
        "balance_sheet",
        6,
    )
