"""Six small generated PDFs with user metadata, and checks that a filtered ranking is the
brute-force filter of the unfiltered one (shared by tests/ and the integration packages)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pdfgen
import pymupdf

TENANTS = ["acme", "globex", "acme", "initech", "acme", "globex"]
TAGS = [["q3", "board"], ["q1"], ["board"], [], ["q3"], ["ops", "q1"]]
TOPICS = [
    "Harbour dredging in Quillon province cost 41 million crowns.",
    "Quillon province rainfall records started in 1931 at the river station.",
    "The Quillon ferry carried 2.1 million passengers in its best year.",
    "Tea exports from the southern hills doubled over the decade.",
    "Quillon province farmers planted 18,000 hectares of barley.",
    "A new rail line links the capital to the coast of Quillon province.",
]


def document_metadata(i: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "tenant": TENANTS[i],
        "year": 2019 + i,
        "date": f"202{i}-03-0{i + 1}",
        "tags": TAGS[i],
        "draft": i % 3 == 0,
        "weight": 0.5 * i,
    }
    if i in (1, 4):
        meta["region"] = "eu"
    return meta


def make_metadata_corpus(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Six 3-page PDFs (a text page, a page with a raster chart, an appendix; even ones also
    a vector chart page) and each one's metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, topic in enumerate(TOPICS):
        doc = pymupdf.open()
        pdfgen.add_text_page(doc, f"Regional report {i + 1}", [topic, pdfgen.FILLER])
        pdfgen.add_raster_chart_page(doc)
        pdfgen.add_text_page(
            doc, f"Appendix {i + 1}", [f"Table A{i + 1} lists {3 * i + 7} survey sites.", topic]
        )
        if i % 2 == 0:
            pdfgen.add_vector_chart_page(doc)
        doc.set_metadata({"title": f"Regional report {i + 1}"})
        out.append((pdfgen.save_pdf(doc, folder / f"report_{i + 1}.pdf"), document_metadata(i)))
    return out


# A filter (as given to retrieve) and the same condition written out in Python over metadata.
FILTERS: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
    ({"tenant": "acme"}, lambda m: m["tenant"] == "acme"),
    ({"year": {"gte": 2021, "lt": 2024}}, lambda m: 2021 <= m["year"] < 2024),
    ({"tags": {"in": ["q3", "board"]}}, lambda m: bool({"q3", "board"} & set(m["tags"]))),
    (
        {"$or": [{"region": "eu"}, {"draft": True}]},
        lambda m: m.get("region") == "eu" or m["draft"],
    ),
    (
        {"date": {"gte": "2022-01-01"}, "tenant": {"ne": "globex"}},
        lambda m: m["date"] >= "2022-01-01" and m["tenant"] != "globex",
    ),
    ({"tenant": "nobody"}, lambda m: False),
]


def assert_same_ranking(
    got: Sequence[Any],
    expected_all: Sequence[Any],
    k: int,
    key: Callable[[Any], Any] = lambda h: h.key,
    score: Callable[[Any], float] = lambda h: h.score,
) -> None:
    """``got`` (best first, at most ``k``) is the first ``k`` of ``expected_all`` (the whole
    brute-force ranking): as many hits (k filled when enough match), the same scores in order,
    and each hit one of ``expected_all`` with that score (ties at the cut may swap)."""
    expected = list(expected_all)[:k]
    assert len(got) == len(expected), ([key(h) for h in got], [key(h) for h in expected])
    assert len({key(h) for h in got}) == len(got)
    by_key = {key(e): score(e) for e in expected_all}
    for g, e in zip(got, expected, strict=True):
        tol = 1e-4 * max(1.0, abs(score(e)))
        assert abs(score(g) - score(e)) <= tol, (key(g), score(g), key(e), score(e))
        assert key(g) in by_key and abs(by_key[key(g)] - score(g)) <= tol, key(g)
