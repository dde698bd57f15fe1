"""The eval harness end to end on a tiny generated set: data sets, pipelines, runner, reports, CLI.

Real parts throughout: PDFs made with PyMuPDF, LanceDB on disk, the bundled MiniLM, tesseract.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from mm_retriever.eval.datasets import (
    DatasetError,
    DatasetUnavailableError,
    EvalDataset,
    load_dataset,
)
from mm_retriever.eval.pipelines import OursPipeline, make_pipeline
from mm_retriever.eval.report import markdown_table, write_report
from mm_retriever.eval.runner import run, share_indexes

PAGES = {
    "solar.pdf": [
        "Solar power capacity grew fastest in Asia. China installed 200 gigawatts of panels.",
        "Wind turbines in the North Sea supply electricity to Denmark and Germany.",
    ],
    "fruit.pdf": [
        "Apple orchards in Washington harvest Honeycrisp apples every autumn.",
        "Banana plantations in Ecuador export bananas to Europe by ship.",
    ],
}
QUERIES = [
    ("q1", "How many gigawatts of solar panels did China install?", "solar.pdf", 0, ["chart"]),
    ("q2", "Which countries get power from North Sea wind turbines?", "solar.pdf", 1, ["text"]),
    ("q3", "Where are Honeycrisp apples harvested?", "fruit.pdf", 0, ["text", "table"]),
    ("q4", "Which country exports bananas to Europe?", "fruit.pdf", 1, ["figure"]),
]


def _write_pdf(path: Path, texts: list[str]) -> None:
    doc = pymupdf.open()
    for text in texts:
        page = doc.new_page(width=400, height=300)
        page.insert_textbox(pymupdf.Rect(30, 30, 370, 270), text, fontsize=12)
    doc.save(path)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tinyset")
    (root / "pdfs").mkdir()
    for name, texts in PAGES.items():
        _write_pdf(root / "pdfs" / name, texts)
    with open(root / "queries.jsonl", "w") as fh:
        for qid, text, doc, _, sources in QUERIES:
            src = {"chart": "Chart", "text": "Pure-text (Plain-text)", "table": "Table"}
            src["figure"] = "Figure"
            row = {"query_id": qid, "query": text, "doc_id": doc}
            row["evidence_sources"] = [src[s] for s in sources]
            fh.write(json.dumps(row) + "\n")
    with open(root / "qrels.tsv", "w") as fh:
        fh.write("query_id\tdoc_id\tpage\trelevance\n")
        for qid, _, doc, page, _ in QUERIES:
            fh.write(f"{qid}\t{doc}\t{page}\t1\n")
    return root


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MM_RETRIEVER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _minilm_hybrid(minilm_path: str, name: str = "hybrid", **kw) -> OursPipeline:
    return make_pipeline(name, text_model=minilm_path, device="cpu", **kw)  # type: ignore[return-value]


# ------------------------------------------------------------------------------ data sets


def test_load_local_folder(tiny_set: Path) -> None:
    ds = load_dataset(tiny_set)
    assert [f.name for f in ds.files] == ["fruit.pdf", "solar.pdf"]
    assert [q.query_id for q in ds.queries] == ["q1", "q2", "q3", "q4"]
    assert ds.qrels["q3"] == {("fruit.pdf", 0): 1}
    assert ds.queries[2].sources == ["text", "table"]
    assert ds.has_docs and ds.num_relevant == 4
    small = ds.limit(n_docs=1)
    assert [f.name for f in small.files] == ["fruit.pdf"]
    assert [q.query_id for q in small.queries] == ["q3", "q4"]


def test_fingerprint_follows_content_not_file_times(tmp_path: Path, tiny_set: Path) -> None:
    import os
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_set, copy)
    os.utime(copy / "pdfs" / "fruit.pdf", (1, 1))  # a fresh copy: other times, same bytes
    assert load_dataset(copy).fingerprint() == load_dataset(tiny_set).fingerprint()
    with open(copy / "pdfs" / "fruit.pdf", "ab") as fh:
        fh.write(b"\n% edited\n")
    assert load_dataset(copy).fingerprint() != load_dataset(tiny_set).fingerprint()


def test_local_folder_errors(tmp_path: Path, tiny_set: Path) -> None:
    with pytest.raises(DatasetError, match="unknown data set"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "pdfs").mkdir()
    with pytest.raises(DatasetError, match=r"missing queries\.jsonl"):
        load_dataset(tmp_path)
    bad = tmp_path / "bad"
    (bad / "pdfs").mkdir(parents=True)
    (bad / "pdfs" / "a.pdf").write_bytes((tiny_set / "pdfs" / "solar.pdf").read_bytes())
    (bad / "queries.jsonl").write_text('{"query_id": "q1", "query": "x", "doc_id": "a.pdf"}\n')
    (bad / "qrels.tsv").write_text("query_id\tdoc_id\tpage\trelevance\nq1\tother.pdf\t0\t1\n")
    with pytest.raises(DatasetError, match="not in pdfs"):
        load_dataset(bad)


def _image(text: str) -> Image.Image:
    im = Image.new("RGB", (320, 120), "white")
    ImageDraw.Draw(im).text((10, 40), text, fill="black", font=ImageFont.load_default())
    return im


def test_vidore_beir_from_disk(tmp_path: Path, cache: Path) -> None:
    import datasets

    corpus = datasets.Dataset.from_dict(
        {"corpus-id": [7, 9], "image": [_image("seven"), _image("nine")]}
    )
    queries = datasets.Dataset.from_dict({"query-id": [1, 2], "query": ["find seven", "nine?"]})
    qrels = datasets.Dataset.from_dict(
        {"query-id": [1, 2, 2], "corpus-id": [7, 9, 7], "score": [1, 2, 0]}
    )
    folder = tmp_path / "beir"
    datasets.DatasetDict({"corpus": corpus, "queries": queries, "qrels": qrels}).save_to_disk(
        str(folder)
    )
    ds = load_dataset(f"vidore:{folder}")
    assert [f.name for f in ds.files] == ["7.png", "9.png"]
    assert all(f.exists() and str(f).startswith(str(cache)) for f in ds.files)
    assert ds.qrels == {"1": {("7.png", 0): 1}, "2": {("9.png", 0): 2}}
    assert not ds.has_docs


def test_docvqa_qa_style_from_disk(tmp_path: Path, cache: Path) -> None:
    import datasets

    rows = datasets.Dataset.from_dict(
        {
            "questionId": [10, 11, 12],
            "question": ["total?", "date?", "name?"],
            "docId": [5, 5, 6],
            "image": [_image("page five"), _image("page five"), _image("page six")],
        }
    )
    folder = tmp_path / "docvqa"
    rows.save_to_disk(str(folder))
    ds = load_dataset(f"docvqa:{folder}")
    assert [f.name for f in ds.files] == ["5.png", "6.png"]
    assert ds.qrels["11"] == {("5.png", 0): 1} and ds.qrels["12"] == {("6.png", 0): 1}


def test_hub_set_offline_is_a_clear_error(cache: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match="not available offline"):
        load_dataset("vidore:no-such-org/no-such-set-xyz")


# ------------------------------------------------------------------------------ pipelines


def test_share_indexes_single_legs_use_hybrid_index(minilm_path: str) -> None:
    hybrid = _minilm_hybrid(minilm_path)
    text = _minilm_hybrid(minilm_path, "text")
    bm25 = _minilm_hybrid(minilm_path, "bm25")
    layer = _minilm_hybrid(minilm_path, "layer-bm25")
    shared = share_indexes([text, bm25, hybrid, layer])
    assert shared == {"text": "hybrid", "bm25": "hybrid"}
    assert text.config == hybrid.config and text.retriever == {"legs": ["text"]}
    # fusion settings are query-time: they do not change which index is used
    other = make_pipeline(
        "hybrid", text_model=minilm_path, device="cpu", retriever={"weights": {"bm25": 3.0}}
    )
    assert other.index_settings() == hybrid.index_settings()


def test_ocr_pipelines_read_ocr_only() -> None:
    p = make_pipeline("ocr-bm25", ocr_engine="tesseract")
    ingest = p.config.ingest  # type: ignore[attr-defined]
    assert (ingest.ocr, ingest.page_text, ingest.ocr_engine) == ("always", "ocr", "tesseract")
    assert p.ocr_engine() == ("tesseract", 150, 960, "auto")


def test_run_scores_ours_and_peers(tiny_set: Path, tmp_path: Path, minilm_path: str) -> None:
    ds = load_dataset(tiny_set)
    pipes = [
        _minilm_hybrid(minilm_path, "layer-bm25"),
        _minilm_hybrid(minilm_path, "text"),
        _minilm_hybrid(minilm_path, "hybrid", retriever={"legs": ["text", "bm25"]}),
        make_pipeline("page", page_model=str(tmp_path / "no-such-colpali"), device="cpu"),
        make_pipeline("llamaindex", text_model=minilm_path),
        make_pipeline("langchain", text_model=minilm_path),
    ]
    docs = run(ds, pipes, ["within-doc", "corpus"], tmp_path / "work", ocr_sample=0)
    assert [d["scope"] for d in docs] == ["within-doc", "corpus"]
    within = docs[0]["pipelines"]
    assert "skipped" in within["page"] and "no-such-colpali" in within["page"]["skipped"]
    for name in ("layer-bm25", "text", "hybrid", "llamaindex", "langchain"):
        res = within[name]
        assert set(res) >= {
            "ndcg@5",
            "recall@5",
            "mrr@10",
            "by_source",
            "index_s_per_page",
            "query_ms_p50",
            "query_ms_p95",
            "bytes_per_page",
        }
        # four unambiguous questions over two-page documents: the right page comes first
        assert res["mrr@10"] == pytest.approx(1.0), name
        assert res["by_source"]["text"]["n"] == 2
        assert set(res["per_query"]) == {q.query_id for q in ds.queries}
    assert within["llamaindex"]["kind"] == "peer" and within["hybrid"]["kind"] == "ours"
    assert within["text"]["index_shared_with"] == "hybrid"
    assert within["layer-bm25"]["bytes_per_page"] > 0
    assert docs[1]["pipelines"]["layer-bm25"]["recall@5"] == pytest.approx(1.0)
    # a second run reuses the indexes built for the same files and settings
    again = run(ds, [_minilm_hybrid(minilm_path, "layer-bm25")], ["corpus"], tmp_path / "work")
    assert again[0]["pipelines"]["layer-bm25"]["ndcg@5"] == pytest.approx(
        docs[1]["pipelines"]["layer-bm25"]["ndcg@5"]
    )
    md = markdown_table(docs)
    assert "llamaindex (peer)" in md and "| hybrid |" in md
    # every pipeline is compared with hybrid; identical per-query scores are "not significant"
    assert md.count("Paired comparison with `hybrid`") == 2
    assert "| hybrid | 1.000 [1.000, 1.000] | (reference) |" in md
    out = write_report(docs, tmp_path / "report")
    assert out.read_text().count(".png") == 2
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        f"ndcg5_by_source_{ds.name}_corpus.png",
        f"ndcg5_by_source_{ds.name}_within-doc.png",
    ]


def test_within_doc_needs_documents(tmp_path: Path) -> None:
    ds = EvalDataset("x", [], [], {})
    with pytest.raises(DatasetError, match="within-doc"):
        run(ds, [], ["within-doc"], tmp_path)


@pytest.mark.skipif(
    shutil.which("tesseract") is None,
    reason="tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng",
)
def test_ocr_bm25_ignores_the_text_layer(tmp_path: Path, cache: Path) -> None:
    """A page whose words are only pixels: ocr-bm25 finds it, layer-bm25 cannot."""
    root = tmp_path / "scan"
    (root / "pdfs").mkdir(parents=True)
    im = Image.new("RGB", (900, 200), "white")
    font = ImageFont.load_default(size=48)
    ImageDraw.Draw(im).text((20, 60), "Quarterly revenue kangaroo", fill="black", font=font)
    doc = pymupdf.open()
    page = doc.new_page(width=450, height=100)
    buf = tmp_path / "scan.png"
    im.save(buf)
    page.insert_image(page.rect, filename=str(buf))
    page = doc.new_page(width=450, height=100)
    page.insert_text((20, 50), "An unrelated page about weather.", fontsize=12)
    doc.save(root / "pdfs" / "scan.pdf")
    (root / "queries.jsonl").write_text(
        '{"query_id": "q", "query": "kangaroo revenue", "doc_id": "scan.pdf"}\n'
    )
    (root / "qrels.tsv").write_text("query_id\tdoc_id\tpage\trelevance\nq\tscan.pdf\t0\t1\n")
    ds = load_dataset(root)
    pipes = [make_pipeline("ocr-bm25", ocr_engine="tesseract"), make_pipeline("layer-bm25")]
    (res,) = run(ds, pipes, ["corpus"], tmp_path / "work", ocr_sample=1)
    assert res["pipelines"]["ocr-bm25"]["mrr@10"] == 1.0
    assert res["pipelines"]["ocr-bm25"]["ocr_s_per_page"] > 0
    assert res["pipelines"]["layer-bm25"]["mrr@10"] == 0.0


def test_llamaindex_sentence_splitter_reads_nltk_data(cache: Path, monkeypatch) -> None:
    """LlamaIndex's splitter loads NLTK data; uv's hard-linked copy is refused by NLTK."""
    from mm_retriever.eval.pipelines import prepare_nltk_data

    monkeypatch.setenv("NLTK_DATA", "")  # unset for the call; restored afterwards
    data = prepare_nltk_data()
    assert data is not None and data.is_relative_to(cache)
    from llama_index.core.node_parser import SentenceSplitter

    text = " ".join(f"Sentence number {i} talks about solar panels." for i in range(60))
    chunks = SentenceSplitter(chunk_size=64, chunk_overlap=0).split_text(text)
    assert len(chunks) > 3 and all(c.endswith(".") for c in chunks)


def test_cli_writes_json_report_and_merges(tiny_set: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mm_retriever.eval.cli import app

    base = ["--dataset", str(tiny_set), "--workdir", str(tmp_path / "work"), "-q"]
    runner = CliRunner()
    first = runner.invoke(
        app, [*base, "-p", "layer-bm25", "--scope", "corpus", "--json", str(tmp_path / "a.json")]
    )
    assert first.exit_code == 0, first.output
    config = tmp_path / "hybrid.json"
    config.write_text(
        json.dumps(
            {
                "index": {"ingest": {"ocr": "never"}, "legs": [{"name": "bm25"}]},
                "retriever": {"legs": ["bm25"]},
            }
        )
    )
    second = runner.invoke(
        app,
        [
            *base,
            "-p",
            "hybrid",
            "--config",
            str(config),
            "--scope",
            "corpus",
            "--json",
            str(tmp_path / "b.json"),
            "--report",
            str(tmp_path / "rep"),
            "--merge",
            str(tmp_path / "a.json"),
        ],
    )
    assert second.exit_code == 0, second.output
    doc = json.loads((tmp_path / "b.json").read_text())
    assert doc["dataset"] == tiny_set.name and doc["scope"] == "corpus"
    assert list(doc["pipelines"]) == ["hybrid", "layer-bm25"]
    hybrid = doc["pipelines"]["hybrid"]
    assert hybrid["ndcg@5"] == pytest.approx(1.0)
    assert hybrid["settings"]["index"]["legs"][0]["name"] == "bm25"
    assert set(hybrid["by_source"]["chart"]) == {"n", "ndcg@5", "recall@5", "mrr@10"}
    report = (tmp_path / "rep" / "report.md").read_text()
    # quality, cost and the paired comparison with hybrid (merged per-query scores)
    assert report.count("| layer-bm25 |") == 3
    assert "Paired comparison with `hybrid` (corpus, all queries, n=4" in report
    bad = runner.invoke(app, ["--dataset", str(tmp_path / "missing"), "-q"])
    assert bad.exit_code == 2 and "unknown data set" in bad.output


@pytest.mark.parametrize("module", ["ir_measures", "scipy", "datasets", "matplotlib"])
def test_cli_names_the_eval_extra_when_a_package_is_missing(monkeypatch, tmp_path, module):
    import sys

    from typer.testing import CliRunner

    from mm_retriever.eval.cli import app

    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    bad = CliRunner().invoke(app, ["--dataset", str(tmp_path), "-q"])
    assert bad.exit_code == 2
    assert 'Install it with: uv pip install "mm-retriever[eval]"' in bad.output
    assert "Traceback" not in bad.output
