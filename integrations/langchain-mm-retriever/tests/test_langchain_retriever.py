"""MMRetriever for LangChain on a real index: documents, options, LCEL, tools, answer()."""

from __future__ import annotations

import base64
import io
import re

import pdfgen
import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import create_retriever_tool
from langchain_mm_retriever import DOCUMENT_PROMPT, MMRetriever, create_mm_retriever_tool
from PIL import Image
from pydantic import Field

from mm_retriever.context import ContextBudget, aanswer, answer

METEOR_Q = "How many meteor sightings did the Zorblax observatory record?"
RAIN_Q = "Annual rainfall in Quillon province by decade"


class RecordingChatModel(GenericFakeChatModel):
    """A fake chat model that keeps every message list it was sent."""

    sent: list = Field(default_factory=list)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.sent.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def _replies(*texts: str) -> RecordingChatModel:
    return RecordingChatModel(messages=iter([AIMessage(t) for t in texts]))


def test_document_fields(mm_index, doc_ids):
    docs = MMRetriever(index=mm_index, k=3).invoke(METEOR_Q)
    assert len(docs) == 3 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    m = top.metadata
    assert pdfgen.TEXT_FACT in top.page_content
    assert m["doc_id"] == doc_ids["mixed.pdf"] and top.id == f"{m['doc_id']}:0"
    assert m["source"].endswith("mixed.pdf") and m["title"] == "Mixed test report"
    assert (m["page"], m["page_index"]) == (1, 0)
    assert m["citation"] == "mixed.pdf, p. 1"
    assert isinstance(m["score"], float)
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert m["leg_ranks"]["bm25"] == 1 and m["leg_ranks"]["text"] == 1
    assert set(m["leg_scores"]) - set(m["leg_ranks"]) == {"document"}  # the document prior
    assert "image_base64" not in m and m["figures"] == []


def test_page_image_base64_on_request(mm_index):
    doc = MMRetriever(index=mm_index, k=1, include_image_base64=True).invoke(METEOR_Q)[0]
    img = Image.open(io.BytesIO(base64.b64decode(doc.metadata["image_base64"])))
    # 72 dpi render of a US-letter page
    assert img.size == (612, 792)
    assert doc.metadata["image_mime"] == f"image/{img.format.lower()}"


def test_figures_in_metadata(mm_index, mixed):
    retriever = MMRetriever(index=mm_index, k=2, include_figure_base64=True)
    doc = retriever.invoke(RAIN_Q)[0]
    spec = mixed.figures[0]  # the raster chart
    assert doc.metadata["page_index"] == spec.page_index
    fig = doc.metadata["figures"][0]
    assert fig["caption"] == spec.caption
    assert fig["bbox"] == pytest.approx(list(spec.bbox), abs=3.0)
    crop = Image.open(io.BytesIO(base64.b64decode(fig["image_base64"])))
    assert crop.format == "PNG" and min(crop.size) > 50


def test_image_dir_writes_files(mm_index, tmp_path):
    retriever = MMRetriever(index=mm_index, k=1, image_dir=str(tmp_path))
    doc = retriever.invoke(RAIN_Q)[0]
    assert Image.open(doc.metadata["image_path"]).size == (612, 792)
    assert Image.open(doc.metadata["figures"][0]["image_path"]).format == "PNG"


def test_matched_text_content(mm_index):
    doc = MMRetriever(index=mm_index, k=1, page_content="matched_text").invoke(METEOR_Q)[0]
    assert pdfgen.TEXT_FACT in doc.page_content
    assert doc.page_content == doc.metadata["matched_text"]


def test_k_and_filters_through_invoke(mm_index, doc_ids):
    retriever = MMRetriever(index=mm_index, k=4)
    assert len(retriever.invoke(METEOR_Q, k=2)) == 2
    docs = retriever.invoke(METEOR_Q, k=3, filters={"source": str(_facts_source(mm_index))})
    assert len(docs) == 3 and {d.metadata["doc_id"] for d in docs} == {doc_ids["facts.pdf"]}
    docs = retriever.invoke(METEOR_Q, filters={"doc_id": doc_ids["mixed.pdf"], "page_index": 3})
    assert [d.metadata["page_index"] for d in docs] == [3]


def _facts_source(index) -> str:
    return next(d["source"] for d in index.documents() if d["source"].endswith("facts.pdf"))


async def test_async_matches_sync(mm_index):
    retriever = MMRetriever(index=mm_index, k=3)
    sync = retriever.invoke(METEOR_Q)
    docs = await retriever.ainvoke(METEOR_Q, k=2)
    assert [d.id for d in docs] == [d.id for d in sync[:2]]


def test_index_path_and_hybrid_retriever(mm_index, hybrid):
    by_path = MMRetriever(index=str(mm_index.store.uri), k=1).invoke(METEOR_Q)
    by_hybrid = MMRetriever(retriever=hybrid, k=1).invoke(METEOR_Q)
    assert by_path[0].id == by_hybrid[0].id


def test_needs_index_or_retriever():
    with pytest.raises(ValueError, match="needs `retriever`"):
        MMRetriever()


def test_lcel_chain_sends_retrieved_pages(mm_index):
    retriever = MMRetriever(index=mm_index, k=2)
    llm = _replies("4,812 sightings [mixed.pdf, p. 1]")
    prompt = ChatPromptTemplate.from_template("Context:\n{context}\n\nQuestion: {question}")

    def fmt(docs):
        return "\n\n".join(f"[{d.metadata['citation']}]\n{d.page_content}" for d in docs)

    chain = {"context": retriever | fmt, "question": RunnablePassthrough()} | prompt | llm
    out = (chain | StrOutputParser()).invoke(METEOR_Q)
    assert out == "4,812 sightings [mixed.pdf, p. 1]"
    (sent,) = llm.sent
    assert isinstance(sent[0], HumanMessage)
    assert sent[0].content.startswith("Context:\n[mixed.pdf, p. 1]\n")
    assert pdfgen.TEXT_FACT in sent[0].content and sent[0].content.endswith(METEOR_Q)


def test_retriever_tool(mm_index):
    tool = create_retriever_tool(
        MMRetriever(index=mm_index, k=2),
        "search_pdfs",
        "Search PDF pages",
        response_format="content_and_artifact",
    )
    assert list(tool.args) == ["query"]
    # what an agent does with a model's tool call
    msg = tool.invoke(
        {"name": "search_pdfs", "args": {"query": METEOR_Q}, "id": "call-1", "type": "tool_call"}
    )
    assert isinstance(msg, ToolMessage) and msg.tool_call_id == "call-1"
    assert pdfgen.TEXT_FACT in msg.content
    assert msg.artifact[0].metadata["page"] == 1


def test_cited_retriever_tool_output_carries_citations(mm_index):
    tool = create_mm_retriever_tool(MMRetriever(index=mm_index, k=2))
    assert tool.name == "search_pdfs" and list(tool.args) == ["query"]
    msg = tool.invoke(
        {"name": "search_pdfs", "args": {"query": METEOR_Q}, "id": "call-2", "type": "tool_call"}
    )
    assert msg.content.startswith("[mixed.pdf, p. 1]\n")  # the best page, headed by its citation
    assert pdfgen.TEXT_FACT in msg.content.split("\n\n[")[0]
    cited = re.findall(r"^\[(.+\.pdf, p\. \d+)\]$", msg.content, flags=re.MULTILINE)
    docs = MMRetriever(index=mm_index, k=2).invoke(METEOR_Q)
    assert cited == [d.metadata["citation"] for d in docs] and len(cited) == 2

    # the same prompt through LangChain's own tool builder
    plain = create_retriever_tool(
        MMRetriever(index=mm_index, k=1), "search_pdfs", "Search", document_prompt=DOCUMENT_PROMPT
    )
    assert plain.invoke({"query": METEOR_Q}).startswith("[mixed.pdf, p. 1]\n")


async def test_cited_retriever_tool_async(mm_index):
    tool = create_mm_retriever_tool(MMRetriever(index=mm_index, k=1))
    out = await tool.ainvoke({"query": METEOR_Q})
    assert out.startswith("[mixed.pdf, p. 1]\n") and pdfgen.TEXT_FACT in out


async def test_retriever_tool_async(mm_index):
    tool = create_retriever_tool(MMRetriever(index=mm_index, k=1), "search_pdfs", "Search")
    assert pdfgen.TEXT_FACT in await tool.ainvoke({"query": METEOR_Q})


def test_answer_with_langchain_chat_model(mm_index):
    llm = _replies("The observatory recorded 4,812 sightings [1].")
    retriever = MMRetriever(index=mm_index)
    budget = ContextBudget(max_pages=2, max_image_side=200)
    ans = answer(METEOR_Q, retriever, llm, budget=budget)
    assert ans.text == "The observatory recorded 4,812 sightings [1]."
    assert [s.citation for s in ans.cited] == ["[1] mixed.pdf p. 1"]
    (sent,) = llm.sent
    assert sent == ans.messages
    blocks = sent[1].content
    images = [b for b in blocks if b["type"] == "image"]
    # a page image per source, then its matched figure crops (at most 2 a page by default)
    assert len(images) == sum(1 + min(len(s.page.figures), 2) for s in ans.sources)
    img = Image.open(io.BytesIO(base64.b64decode(images[0]["base64"])))
    assert max(img.size) == 200
    assert blocks[1]["text"].startswith("[1] mixed.pdf p. 1 (Mixed test report)\n")
    assert pdfgen.TEXT_FACT in blocks[1]["text"]
    assert blocks[-1]["text"].startswith(f"Question: {METEOR_Q}")


async def test_aanswer_with_langchain_chat_model(mm_index):
    llm = _replies("Rainfall by decade [1].")
    ans = await aanswer(RAIN_Q, MMRetriever(index=mm_index), llm, k=1)
    assert ans.sources[0].page.page_index == 2
    images = [b for b in llm.sent[0][1].content if b["type"] == "image"]
    assert len(images) == 2  # page image + the rainfall chart crop
    assert images[1]["mime_type"] == "image/jpeg"  # crops are sent as JPEG (ContextBudget)


def test_answer_uses_the_retrievers_filters(mm_index, doc_ids):
    llm = _replies("Not in these sources.")
    only_facts = MMRetriever(index=mm_index, filters={"doc_id": doc_ids["facts.pdf"]})
    ans = answer(METEOR_Q, only_facts, llm, budget=ContextBudget(max_pages=3, page_images=False))
    assert {s.page.doc_id for s in ans.sources} == {doc_ids["facts.pdf"]}
    assert all(b["type"] == "text" for b in llm.sent[0][1].content)
