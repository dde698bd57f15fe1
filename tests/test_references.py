"""Named figures, tables and sections: read from questions, found as captions on real pages."""

from __future__ import annotations

import re
from pathlib import Path

import pymupdf
import pytest
from pdfgen import add_line_page, save_pdf
from shared_fixtures import bm25_index

from mm_retriever.query.references import Reference, caption_regex, is_listing, matches, references


def test_references_are_read_from_questions() -> None:
    assert references("In figure 5, what is the color of the line?") == [Reference("figure", "5")]
    assert references("What are the items in Table1-1?") == [Reference("table", "1-1")]
    assert references("Papers in Table 2 not mentioned in Section 3.4?") == [
        Reference("table", "2"),
        Reference("section", "3.4"),
    ]
    assert references("See Fig. 3 and fig 3 and Appendix B") == [
        Reference("figure", "3"),
        Reference("appendix", "B"),
    ]
    # plurals and words without a number name nothing
    assert references("How many tables include F1? How many figures are there?") == []
    assert references("the table a b c") == []


@pytest.mark.parametrize(
    ("ref", "text", "expected"),
    [
        (Reference("figure", "5"), "intro\nFigure 5: Results by year\n", True),
        (Reference("figure", "5"), "intro\nFig. 5. Results\n", True),
        (Reference("figure", "5"), "  FIGURE 5\nResults", True),
        (Reference("figure", "5"), "as shown in Figure 5, revenues grew", False),  # a mention
        (Reference("figure", "5"), "Figure 51: other", False),
        (Reference("figure", "5"), "Figure 5.2: a sub-figure", False),
        (Reference("figure", "5"), "Figure 5.", True),
        (Reference("table", "1-1"), "Table 1-1 Compared items", True),
        (Reference("table", "1-1"), "Table 1.1: Compared items", True),
        (Reference("table", "1-1"), "Table 1-12 Other", False),
        (Reference("section", "3.4"), "text\n3.4 Self-Correction with Debate\n", True),
        (Reference("section", "3.4"), "text\nSection 3.4: Debate\n", True),
        (Reference("section", "3.4"), "text\n3.41 Other\n", False),
        (Reference("section", "3.4"), "costs rose 3.4 Percent\n", False),  # not at a line start
        (Reference("appendix", "B"), "Appendix B: Prompts", True),
        (Reference("appendix", "B"), "Appendix Bonus", False),
    ],
)
def test_caption_patterns(ref: Reference, text: str, expected: bool) -> None:
    assert matches(ref, text) is expected
    re.compile(caption_regex(ref))  # and Python reads the same pattern the store runs


def _paper(path: Path) -> Path:
    doc = pymupdf.open()
    bodies = [
        "Introduction\nWe study retrieval. As Figure 2 shows, results vary. See Table 1.",
        "Method\nOur method reads every page of the corpus.\nFigure 1: The pipeline overview",
        "Results\nTable 1: Accuracy by model\nModel A 81.0\nModel B 84.5",
        "Analysis\nFigure 2: Accuracy over training steps\nThe curve rises.",
        "3.4 Related Work\nEarlier systems read text only.",
    ]
    for body in bodies:
        add_line_page(doc, body.split("\n"))
    return save_pdf(doc, path)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("refs")
    idx = bm25_index(root / "idx")
    idx.add([_paper(root / "docs" / "paper.pdf")])
    return idx


def test_the_named_figures_caption_page_comes_first(index) -> None:
    question = "What does Figure 2 show about accuracy?"
    plain = index.retriever(pin_references=False).retrieve(question, k=5)
    pinned = index.retriever().retrieve(question, k=5)
    # BM25 alone prefers the page that mentions "Figure 2" in the text and "accuracy" twice
    assert plain[0].page_index != 3
    assert pinned[0].page_index == 3
    assert pinned[0].leg_scores["reference"] == 1.0
    assert pinned[0].score > pinned[1].score
    assert "reference" not in pinned[1].leg_scores
    assert sorted(p.page_index for p in pinned) == sorted(p.page_index for p in plain)


def test_a_captioned_page_no_leg_found_is_still_returned(index) -> None:
    # no word of the question but the reference is on the Table 1 page
    pages = index.retriever().retrieve("Which model leads in Table 1?", k=3)
    assert pages[0].page_index == 2
    pages = index.retriever().retrieve("What does section 3.4 add to the corpus study?", k=3)
    assert pages[0].page_index == 4


def test_filters_still_hold_for_pinned_pages(index) -> None:
    pages = index.retriever().retrieve(
        "What does Figure 2 show about accuracy?", k=3, filters={"page_index": [0, 1]}
    )
    assert {p.page_index for p in pages} <= {0, 1}


def test_questions_without_references_are_unchanged(index) -> None:
    question = "Which model has the best accuracy?"
    a = [p.page_index for p in index.retriever().retrieve(question, k=5)]
    b = [p.page_index for p in index.retriever(pin_references=False).retrieve(question, k=5)]
    assert a == b


def test_corpus_wide_only_the_best_documents_caption_is_pinned(tmp_path) -> None:
    idx = bm25_index(tmp_path / "idx")
    other = pymupdf.open()
    for lines in (["Weather", "Rain fell on the orchards."], ["Figure 2: Rainfall by month"]):
        add_line_page(other, lines)
    weather = save_pdf(other, tmp_path / "weather.pdf")
    idx.add([_paper(tmp_path / "docs" / "paper.pdf"), weather])
    ids = {d["source"].rsplit("/", 1)[-1]: d["doc_id"] for d in idx.documents()}
    pages = idx.retriever().retrieve("What does Figure 2 show about accuracy over training?", k=4)
    assert (pages[0].doc_id, pages[0].page_index) == (ids["paper.pdf"], 3)
    pinned = [(p.doc_id, p.page_index) for p in pages if "reference" in p.leg_scores]
    assert pinned == [(ids["paper.pdf"], 3)]  # the weather report's Figure 2 is not pinned


def test_listings_are_not_pinned(tmp_path) -> None:
    doc = pymupdf.open()
    contents = ["Contents", *(f"Figure {i}: Result number {i} .... {10 + i}" for i in range(1, 9))]
    contents += [f"3.{i} Part {i} .... {i}" for i in range(1, 7)]
    pages = [
        contents,
        ["Method", "We read every page of the corpus twice."],
        ["Results", "Figure 5: Accuracy by corpus size", "Accuracy rises with size."],
        ["3.4 Related Work", "Earlier systems read the corpus once."],
    ]
    for lines in pages:
        add_line_page(doc, lines, gap=30, fontsize=10)
    idx = bm25_index(tmp_path / "idx")
    idx.add([save_pdf(doc, tmp_path / "report.pdf")])
    figure = idx.retriever().retrieve("What does Figure 5 show about the corpus?", k=4)
    assert [p.page_index for p in figure if "reference" in p.leg_scores] == [2]
    section = idx.retriever().retrieve("What does section 3.4 say about the corpus?", k=4)
    assert [p.page_index for p in section if "reference" in p.leg_scores] == [3]
    assert is_listing(Reference("figure", "5"), "\n".join(contents))
    assert not is_listing(Reference("figure", "5"), "\n".join(pages[2]))
