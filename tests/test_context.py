"""Context for LLMs: budget, downscaling, citations, the three message formats, answer()."""

from __future__ import annotations

import base64
import dataclasses
import io
import sys

import pytest
from PIL import Image

from mm_retriever.context import (
    Answer,
    ContextBudget,
    build_sources,
    cite,
    context_text,
    downscale,
    llm_kind,
    to_langchain_messages,
    to_llamaindex_messages,
    to_openai_messages,
)
from mm_retriever.errors import InvalidQueryError, MissingExtraError
from mm_retriever.types import RetrievedFigure, RetrievedPage


def _jpeg(size: tuple[int, int], color: str = "navy") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="JPEG")
    return buf.getvalue()


def _png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "orange").save(buf, format="PNG")
    return buf.getvalue()


def _page(i: int, score: float, *, figure: bool = False, size=(1224, 1584)) -> RetrievedPage:
    bbox = (72.0, 90.0, 400.0, 300.0)
    crop = _png((800, 500))
    figs = [RetrievedFigure(0, bbox, f"Figure 1: chart {i}", "", 0.5, crop)] if figure else []
    return RetrievedPage(
        doc_id=f"doc{i}",
        page_index=i,
        source=f"/data/report{i}.pdf",
        score=score,
        confidence=score / 2,  # a floor reads this, not the fused score
        text=f"Page {i} says the value is {i * 10}.",
        title=f"Report {i}",
        figures=figs,
        image_bytes=_jpeg(size),
    )


def _decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


PAGES = [_page(2, 0.9, figure=True), _page(0, 0.5), _page(1, 0.1)]


def test_citation_format_and_numbering():
    sources = build_sources(PAGES, ContextBudget(max_pages=2))
    assert [s.citation for s in sources] == ["[1] report2.pdf p. 3", "[2] report0.pdf p. 1"]
    assert cite(7, PAGES[2]) == "[7] report1.pdf p. 2"


def test_budget_min_score_and_max_pages():
    sources = build_sources(PAGES, ContextBudget(max_pages=5, min_score=0.15))
    assert [s.page.doc_id for s in sources] == ["doc2", "doc0"]  # confidence 0.45, 0.25
    sources = build_sources(PAGES, ContextBudget(max_pages=5, min_score=0.3))
    assert [s.page.doc_id for s in sources] == ["doc2"]  # fused scores 0.9, 0.5 do not count
    unrated = [dataclasses.replace(p, confidence=None) for p in PAGES]
    with pytest.raises(InvalidQueryError, match="min_score needs a calibrated confidence"):
        build_sources(unrated, ContextBudget(min_score=0.1))
    sources = build_sources(list(reversed(PAGES)), ContextBudget(max_pages=1))
    assert [s.page.doc_id for s in sources] == ["doc2"]  # best score first, whatever the order


def test_images_downscaled_before_base64():
    budget = ContextBudget(max_pages=1, max_image_side=256)
    msgs = to_openai_messages("What is the value?", PAGES, budget)
    urls = [p["image_url"]["url"] for p in msgs[1]["content"] if p["type"] == "image_url"]
    assert len(urls) == 2  # page image + one figure crop
    assert urls[0].startswith("data:image/jpeg;base64,")
    assert urls[1].startswith("data:image/jpeg;base64,")  # the PNG crop, sent as JPEG
    sizes = [_decode(u.split(",", 1)[1]).size for u in urls]
    assert sizes == [(198, 256), (256, 160)]  # aspect kept, longer side 256


def test_original_format_keeps_png_crops():
    budget = ContextBudget(max_pages=1, max_image_side=256, image_format="original")
    images = build_sources(PAGES, budget)[0].images
    assert [i.mime_type for i in images] == ["image/jpeg", "image/png"]


def test_max_image_pixels_caps_the_area():
    budget = ContextBudget(max_pages=1, max_image_side=None, max_image_pixels=100_000)
    page_image = build_sources(PAGES, budget)[0].images[0]
    w, h = Image.open(io.BytesIO(page_image.data)).size
    assert w * h <= 100_000 and w * h > 90_000  # as large as the cap allows
    assert abs(w / h - 1224 / 1584) < 0.01


def test_image_byte_budget_leaves_images_out_and_says_so():
    full = build_sources(PAGES, ContextBudget(max_pages=3, max_image_side=512))
    sizes = [i.base64_size for s in full for i in s.images]
    assert len(sizes) == 4  # three page images and one crop
    cap = sizes[0] + sizes[1]  # room for the first page's two images only
    sources = build_sources(
        PAGES, ContextBudget(max_pages=3, max_image_side=512, max_image_bytes=cap)
    )
    kept = [i for s in sources for i in s.images]
    assert sum(i.base64_size for i in kept) <= cap
    assert [len(s.images) for s in sources] == [2, 0, 0]
    assert sources[1].omitted == ["[2] report0.pdf p. 1: page image"]
    msgs = to_openai_messages("q?", sources, system_prompt=None)
    texts = [p["text"] for p in msgs[0]["content"] if p["type"] == "text"]
    note = next(t for t in texts if "left out" in t)
    assert note.startswith("2 image(s) left out to stay within the image budget: [2] report0.pdf")
    assert "[3] report1.pdf p. 2: page image" in note
    none = build_sources(PAGES, ContextBudget(max_pages=3, max_image_bytes=0))
    assert not any(s.images for s in none) and sum(len(s.omitted) for s in none) == 4


def test_small_image_keeps_its_bytes():
    data = _jpeg((100, 50))
    assert downscale(data, 256) == (data, "image/jpeg")


def test_no_images_when_budget_says_so():
    budget = ContextBudget(page_images=False, figures=False)
    msgs = to_openai_messages("q", PAGES, budget)
    assert all(p["type"] == "text" for p in msgs[1]["content"])


def test_openai_messages_exact_layout():
    budget = ContextBudget(max_pages=1, max_image_side=64, image_detail="low")
    msgs = to_openai_messages("What is the value?", PAGES, budget, system_prompt="SYS")
    assert msgs[0] == {"role": "system", "content": "SYS"}
    assert msgs[1]["role"] == "user"
    kinds = [p["type"] for p in msgs[1]["content"]]
    assert kinds == ["text", "text", "text", "image_url", "text", "image_url", "text"]
    texts = [p["text"] for p in msgs[1]["content"] if p["type"] == "text"]
    assert texts[0] == "Sources:"
    assert texts[1].startswith("[1] report2.pdf p. 3 (Report 2)\nPage 2 says the value is 20.")
    assert "Figure captions: Figure 1: chart 2" in texts[1]
    assert texts[2] == "Image — [1] report2.pdf p. 3: page image"
    assert texts[3] == "Image — [1] report2.pdf p. 3: figure 1 (Figure 1: chart 2)"
    assert texts[4].startswith("Question: What is the value?")
    assert msgs[1]["content"][3]["image_url"]["detail"] == "low"


def test_langchain_blocks_match_openai_content():
    from langchain_core.messages import HumanMessage, SystemMessage

    budget = ContextBudget(max_pages=2, max_image_side=64)
    lc = to_langchain_messages("q?", PAGES, budget)
    oa = to_openai_messages("q?", PAGES, budget)
    assert isinstance(lc[0], SystemMessage) and lc[0].content == oa[0]["content"]
    assert isinstance(lc[1], HumanMessage)
    for block, part in zip(lc[1].content, oa[1]["content"], strict=True):
        if part["type"] == "text":
            assert block == {"type": "text", "text": part["text"]}
        else:
            assert block["type"] == "image"
            assert part["image_url"]["url"] == f"data:{block['mime_type']};base64,{block['base64']}"


def test_llamaindex_blocks_match_openai_content():
    from llama_index.core.llms import ImageBlock, MessageRole, TextBlock

    budget = ContextBudget(max_pages=2, max_image_side=64)
    li = to_llamaindex_messages("q?", PAGES, budget)
    oa = to_openai_messages("q?", PAGES, budget)
    assert li[0].role == MessageRole.SYSTEM and li[0].content == oa[0]["content"]
    assert li[1].role == MessageRole.USER
    for block, part in zip(li[1].blocks, oa[1]["content"], strict=True):
        if part["type"] == "text":
            assert isinstance(block, TextBlock) and block.text == part["text"]
        else:
            assert isinstance(block, ImageBlock)
            url = f"data:{block.image_mimetype};base64,{block.image.decode()}"
            assert url == part["image_url"]["url"]


def test_context_text_for_text_only_models():
    text = context_text("q?", build_sources(PAGES[:1], ContextBudget()))
    assert "<[1] report2.pdf p. 3: page image>" in text and "base64" not in text


def test_llm_kind_rejects_other_objects():
    with pytest.raises(TypeError, match="LangChain chat model or a LlamaIndex LLM"):
        llm_kind(object())


def test_answer_cited_sources_parsed():
    ans = Answer("q", "It is 20 [1], not 0 [2][1] or [9].", build_sources(PAGES[:2]))
    assert [s.number for s in ans.cited] == [1, 2]
    assert ans.citations == ["[1] report2.pdf p. 3", "[2] report0.pdf p. 1"]


@pytest.mark.parametrize(
    ("blocked", "build", "command"),
    [
        ("langchain_core", to_langchain_messages, r'uv pip install "mm-retriever\[langchain\]"'),
        ("llama_index", to_llamaindex_messages, r'uv pip install "mm-retriever\[llamaindex\]"'),
    ],
)
def test_missing_framework_names_the_install_command(monkeypatch, blocked, build, command):
    monkeypatch.setitem(sys.modules, blocked, None)  # as if the package were not installed
    with pytest.raises(MissingExtraError, match=command):
        build("q", PAGES)
    assert issubclass(MissingExtraError, ImportError)
