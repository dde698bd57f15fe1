"""Page-image leg (tiny ColPali) and figure leg (tiny CLIP) on a real index.

Scores are checked against MaxSim / cosine computed directly (numpy) on the stored vectors.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pdfgen import make_mixed_pdf, make_sample_pdf
from tiny_models import tiny_clip, tiny_colpali, visual_legs  # noqa: F401  (session fixtures)

from mm_retriever.config import IndexConfig, IngestConfig
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import Query
from mm_retriever.store.arrow import vectors_from_arrow


def numpy_maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    return float((query.astype(np.float32) @ doc.astype(np.float32).T).max(axis=1).sum())


@pytest.fixture(scope="module")
def visual(tmp_path_factory, tiny_colpali, tiny_clip):  # noqa: F811
    root = tmp_path_factory.mktemp("visual")
    mixed = make_mixed_pdf(root / "docs" / "mixed.pdf")
    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72),
        legs=visual_legs(tiny_colpali, tiny_clip),
    )
    index = MultimodalIndex.create(root / "index", config)
    report = index.add([mixed.path])
    assert not report.failed and report.pages == 5
    return index, mixed, root


def test_page_leg_equals_direct_maxsim(visual) -> None:
    index, _, _ = visual
    leg = index.legs["page"]
    keys, mats = leg.stored_vectors(index.store)
    assert len(keys) == 5 and all(m.dtype == np.float16 for m in mats)
    vtype = index.store.table(leg.table).schema.field("vectors").type
    assert vtype == pa.list_(pa.list_(pa.float16(), leg.encoder.dim))

    question = "annual rainfall in Quillon province"
    hits = index.retriever(legs=["page"]).leg_hits(question, k=10)["page"]
    q = leg.encoder.encode_query([question])[0].float().numpy()
    expected = {key: numpy_maxsim(q, m) for key, m in zip(keys, mats, strict=True)}
    assert len(hits) == 5 and [h.rank for h in hits] == [1, 2, 3, 4, 5]
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.key], rel=1e-4, abs=1e-4)
    assert [h.key for h in hits] == sorted(expected, key=lambda k: (-expected[k], k))[:5]

    # filters score only the allowed pages, with the same scores
    some = index.retriever(legs=["page"]).leg_hits(
        question, k=10, filters={"page_index": {"gte": 1, "lte": 2}}
    )["page"]
    assert sorted(h.page_index for h in some) == [1, 2]
    for hit in some:
        assert hit.score == pytest.approx(expected[hit.key], rel=1e-4, abs=1e-4)


def test_page_leg_query_by_image(visual) -> None:
    index, _, _ = visual
    leg = index.legs["page"]
    page_image = index.retriever().retrieve("Quillon rainfall", k=1)[0].image()
    keys, mats = leg.stored_vectors(index.store)
    q = leg.encoder.encode_document([page_image.convert("RGB")])[0].float().numpy()
    hits = leg.retrieve(index.store, Query(image=page_image), k=5)
    expected = {key: numpy_maxsim(q, m) for key, m in zip(keys, mats, strict=True)}
    assert {h.key: h.score for h in hits} == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_page_index_is_built_once_and_updated_in_place(visual, tmp_path) -> None:
    index, _, _ = visual
    leg = index.legs["page"]
    first = leg._index(index.store)
    leg.retrieve(index.store, Query("anything"), 3)
    assert leg._index(index.store) is first  # no rebuild on the query path
    n = len(first)
    extra = make_sample_pdf(tmp_path / "extra.pdf", ["One more page about lighthouses."])
    index.add([extra])
    updated = leg._index(index.store)
    assert updated is first and len(updated) == n + 1  # the add was applied in place
    hits = leg.retrieve(index.store, Query("lighthouses"), 10)
    assert len(hits) == n + 1


def test_figure_leg_clip_scores_and_crops(visual) -> None:
    index, mixed, _ = visual
    leg = index.legs["figure"]
    data = index.store.query(leg.table)
    assert "text_vector" not in data.schema.names
    images = vectors_from_arrow(data.column("image_vector"))
    question = "bar chart of revenue by region"
    q = leg.image_encoder.encode_query([question])[0]
    per_figure = {
        (d, p, f): 0.5 * float(images[i] @ q)
        for i, (d, p, f) in enumerate(
            zip(
                data.column("doc_id").to_pylist(),
                data.column("page_index").to_pylist(),
                data.column("figure_index").to_pylist(),
                strict=True,
            )
        )
    }
    hits = index.retriever(legs=["figure"]).leg_hits(question, k=10)["figure"]
    figure_pages = {spec.page_index for spec in mixed.figures}
    assert figure_pages <= {h.page_index for h in hits}
    for hit in hits:
        mine = {k: v for k, v in per_figure.items() if k[:2] == hit.key}
        assert hit.score == pytest.approx(max(mine.values()), abs=1e-5)
        assert hit.matched[0] == max(mine, key=mine.get)[2]

    pages = index.retriever(legs=["figure"]).retrieve(question, k=5)
    with_figs = [p for p in pages if p.page_index in figure_pages]
    assert with_figs and all(p.figures for p in with_figs)
    fig = with_figs[0].figures[0]
    assert fig.image().format == "PNG" and fig.image_base64()
    assert len(fig.bbox) == 4 and fig.caption.startswith("Figure")

    by_image = leg.retrieve(index.store, Query(image=fig.image().convert("RGB")), k=3)
    assert by_image[0].key == with_figs[0].key  # a crop finds its own page


def test_visual_index_reopens(visual) -> None:
    index, _, _ = visual
    reopened = MultimodalIndex.open(index.uri, device="cpu")
    assert reopened.config.legs == index.config.legs and reopened.config.device == "cpu"
    q = "Tarragant revenue"
    old = index.retriever().leg_hits(q, k=5)
    new = reopened.retriever().leg_hits(q, k=5)
    for name in ("page", "figure"):
        assert [h.key for h in new[name]] == [h.key for h in old[name]]
        assert [h.score for h in new[name]] == pytest.approx([h.score for h in old[name]])
