"""MMRetriever for LlamaIndex on a real index: nodes, query engine, fusion, agent, answer()."""

from __future__ import annotations

import base64
import io

import pdfgen
import pytest
from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.llms import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.llms.mock import (
    MockFunctionCallingLLM,
    MockLLM,
    MockLLMWithChatMemoryOfLastCall,
)
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.retrievers import QueryFusionRetriever
from llama_index.core.schema import (
    ImageNode,
    MetadataMode,
    NodeRelationship,
    ObjectType,
    QueryBundle,
    TextNode,
)
from llama_index.core.tools import RetrieverTool
from llama_index.retrievers.mm_retriever import MMRetriever, PageTextNode
from PIL import Image

from mm_retriever.context import ContextBudget, aanswer, answer

METEOR_Q = "How many meteor sightings did the Zorblax observatory record?"
RAIN_Q = "Annual rainfall in Quillon province by decade"
QUINCE_Q = "How many tonnes of quinces did the Velmora orchard harvest?"


def _img(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_text_and_page_image_nodes(mm_index, doc_ids):
    nodes = MMRetriever(index=mm_index, similarity_top_k=2, figures=False).retrieve(METEOR_Q)
    kinds = [type(n.node) for n in nodes]
    assert kinds == [PageTextNode, ImageNode, PageTextNode, ImageNode]
    assert issubclass(PageTextNode, TextNode) and PageTextNode.class_name() == "TextNode"
    text, image = nodes[0], nodes[1]
    doc_id = doc_ids["mixed.pdf"]
    assert pdfgen.TEXT_FACT in text.node.text
    assert text.node.node_id == f"{doc_id}:p0" and image.node.node_id == f"{doc_id}:p0:image"
    assert text.score == image.score == text.node.metadata["score"]
    assert nodes[0].score >= nodes[2].score
    m = text.node.metadata
    assert (m["page"], m["page_index"], m["page_label"]) == (1, 0, "1")
    assert m["doc_id"] == doc_id and m["file_name"] == "mixed.pdf" and m["kind"] == "page_text"
    assert m["source"].endswith("mixed.pdf") and m["title"] == "Mixed test report"
    assert m["leg_ranks"]["bm25"] == 1
    assert set(m["leg_scores"]) - set(m["leg_ranks"]) == {"document"}  # the document prior
    # relationships point back to the document (and images to their page's text node)
    src = text.node.relationships[NodeRelationship.SOURCE]
    assert src.node_id == doc_id and src.node_type == ObjectType.DOCUMENT
    assert text.node.ref_doc_id == doc_id
    assert image.node.relationships[NodeRelationship.PARENT].node_id == text.node.node_id
    assert image.node.ref_doc_id == doc_id
    # the page image is embedded as base64 and readable by LlamaIndex
    assert image.node.image_mimetype == "image/jpeg" or image.node.image_mimetype == "image/png"
    assert Image.open(image.node.resolve_image()).size == (612, 792)
    # the LLM sees the text and a few metadata fields, never scores or base64
    shown = text.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "file_name: mixed.pdf" in shown and "page_label: 1" in shown
    assert "leg_scores" not in shown
    assert text.node.get_content(metadata_mode=MetadataMode.EMBED) == text.node.text


def test_figure_nodes(mm_index, mixed, tmp_path):
    retriever = MMRetriever(index=mm_index, similarity_top_k=1, image_dir=tmp_path)
    nodes = retriever.retrieve(RAIN_Q)
    kinds = [n.node.metadata["kind"] for n in nodes]
    assert kinds[:3] == ["page_text", "page_image", "figure"]
    spec = mixed.figures[0]
    fig = nodes[2].node
    assert isinstance(fig, ImageNode) and fig.image_mimetype == "image/png"
    assert fig.metadata["page_index"] == spec.page_index and fig.metadata["caption"] == spec.caption
    assert fig.metadata["bbox"] == pytest.approx(list(spec.bbox), abs=3.0)
    assert spec.caption in fig.text
    assert fig.relationships[NodeRelationship.PARENT].node_id == nodes[0].node.node_id
    assert _img(fig.image).format == "PNG"
    assert Image.open(fig.image_path).size == _img(fig.image).size  # written to image_dir
    assert nodes[0].node.metadata["figures"][0]["caption"] == spec.caption


def test_options_trim_nodes(mm_index):
    retriever = MMRetriever(
        index=mm_index,
        similarity_top_k=1,
        page_images=False,
        figures=False,
        text_mode="matched_text",
    )
    (node,) = retriever.retrieve(RAIN_Q)
    assert node.node.text == node.node.metadata["matched_text"]
    no_b64 = MMRetriever(index=mm_index, similarity_top_k=1, embed_images=False)
    image = no_b64.retrieve(METEOR_Q)[1].node
    assert image.image is None


def test_filters(mm_index, doc_ids):
    only_facts = {"doc_id": doc_ids["facts.pdf"]}
    retriever = MMRetriever(
        index=mm_index, similarity_top_k=3, page_images=False, filters=only_facts
    )
    nodes = retriever.retrieve(METEOR_Q)
    assert len(nodes) == 3 and {n.node.ref_doc_id for n in nodes} == {doc_ids["facts.pdf"]}


async def test_aretrieve_matches_retrieve(mm_index):
    retriever = MMRetriever(index=mm_index, similarity_top_k=2)
    sync = retriever.retrieve(QUINCE_Q)
    nodes = await retriever.aretrieve(QUINCE_Q)
    assert [n.node.node_id for n in nodes] == [n.node.node_id for n in sync]
    assert "312 tonnes of quinces" in nodes[0].node.text


def test_retriever_query_engine(mm_index):
    retriever = MMRetriever(index=mm_index, similarity_top_k=2, figures=False)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUINCE_Q)
    # MockLLM echoes its prompt: the retrieved page text reached the LLM
    assert "312 tonnes of quinces" in str(response)
    assert QUINCE_Q in str(response)
    top = response.source_nodes[0]
    assert top.node.metadata["file_name"] == "facts.pdf" and top.node.metadata["page"] == 3


async def test_retriever_query_engine_async(mm_index):
    engine = RetrieverQueryEngine.from_args(
        MMRetriever(index=mm_index, similarity_top_k=1), llm=MockLLM()
    )
    response = await engine.aquery(METEOR_Q)
    assert pdfgen.TEXT_FACT in str(response)


def test_query_fusion_retriever(mm_index):
    dense_and_bm25 = MMRetriever(index=mm_index, similarity_top_k=3, page_images=False)
    bm25_only = MMRetriever(
        mm_index.retriever(legs=["bm25"]), similarity_top_k=3, page_images=False
    )
    fusion = QueryFusionRetriever(
        [dense_and_bm25, bm25_only],
        llm=MockLLM(),
        num_queries=1,  # no query generation: the mock LLM cannot write queries
        mode="reciprocal_rerank",
        similarity_top_k=2,
        use_async=False,
    )
    nodes = fusion.retrieve(QUINCE_Q)
    assert len(nodes) == 2
    # the quince page, found by both retrievers, is one node with both votes
    assert nodes[0].node.metadata["file_name"] == "facts.pdf"
    assert "312 tonnes of quinces" in nodes[0].node.text
    assert nodes[0].score == pytest.approx(2 / 60)  # rank 0 in both lists, k=60
    assert nodes[1].node.node_id != nodes[0].node.node_id


def test_same_page_hashes_alike_across_queries(mm_index):
    retriever = MMRetriever(index=mm_index, similarity_top_k=1, page_images=False, figures=False)
    (a,) = retriever.retrieve(QUINCE_Q)
    (b,) = retriever.retrieve("Velmora quinces")
    assert a.node.node_id == b.node.node_id
    assert a.node.metadata["leg_scores"] != b.node.metadata["leg_scores"]
    assert a.node.hash == b.node.hash


async def test_query_fusion_retriever_async(mm_index):
    fusion = QueryFusionRetriever(
        [MMRetriever(index=mm_index, similarity_top_k=2, page_images=False)],
        llm=MockLLM(),
        num_queries=1,
        similarity_top_k=1,
        use_async=True,
    )
    nodes = await fusion.aretrieve(METEOR_Q)
    assert pdfgen.TEXT_FACT in nodes[0].node.text


async def test_function_agent_uses_the_tool(mm_index):
    tool = RetrieverTool.from_defaults(
        MMRetriever(index=mm_index, similarity_top_k=1, page_images=False),
        name="search_pdfs",
        description="Search PDF pages",
    )

    def respond(messages, **kwargs):
        results = [m for m in messages if m.role == MessageRole.TOOL]
        if not results:  # first turn: call the tool with the user's question
            call = ToolCallBlock(
                tool_call_id="call-1", tool_name="search_pdfs", tool_kwargs={"input": QUINCE_Q}
            )
            return ChatMessage(role=MessageRole.ASSISTANT, blocks=[call])
        found = "312 tonnes" in results[-1].content
        return ChatMessage(role=MessageRole.ASSISTANT, content=f"found={found}")

    agent = FunctionAgent(tools=[tool], llm=MockFunctionCallingLLM(response_generator=respond))
    handler = agent.run(QUINCE_Q)
    calls = [ev async for ev in handler.stream_events() if isinstance(ev, ToolCallResult)]
    result = await handler
    assert str(result) == "found=True"
    (call,) = calls
    assert call.tool_name == "search_pdfs"
    nodes = call.tool_output.raw_output
    assert nodes[0].node.metadata["citation"] == "facts.pdf, p. 3"


def test_query_by_image_needs_an_image_leg(mm_index, tmp_path):
    path = tmp_path / "chart.png"
    path.write_bytes(pdfgen.bar_chart_png(pdfgen.RASTER_LABELS, pdfgen.RASTER_VALUES))
    retriever = MMRetriever(index=mm_index)
    with pytest.raises(ValueError, match="no image leg"):
        retriever.retrieve(QueryBundle(query_str="", image_path=str(path)))


def test_answer_with_llamaindex_llm(mm_index):
    llm = MockLLMWithChatMemoryOfLastCall()
    retriever = MMRetriever(index=mm_index)
    ans = answer(RAIN_Q, retriever, llm, budget=ContextBudget(max_pages=1, max_image_side=300))
    sent = llm.last_chat_messages
    assert sent == ans.messages and sent[0].role == MessageRole.SYSTEM
    blocks = sent[1].blocks
    assert [type(b) for b in blocks] == [
        TextBlock,
        TextBlock,
        TextBlock,
        ImageBlock,
        TextBlock,
        ImageBlock,
        TextBlock,
    ]
    assert blocks[1].text.startswith("[1] mixed.pdf p. 3 (Mixed test report)")
    assert blocks[4].text == f"Image — [1] mixed.pdf p. 3: figure 1 ({pdfgen.RASTER_CAPTION})"
    page_img = Image.open(blocks[3].resolve_image())
    assert max(page_img.size) == 300
    # MockLLM answers with the prompt it built from the text blocks
    assert RAIN_Q in ans.text and ans.citations == ["[1] mixed.pdf p. 3"]


async def test_aanswer_with_llamaindex_llm(mm_index):
    llm = MockLLMWithChatMemoryOfLastCall()
    ans = await aanswer(QUINCE_Q, MMRetriever(index=mm_index), llm, k=2)
    assert llm.last_called_chat_function[-1] == "achat"
    assert ans.sources[0].citation == "[1] facts.pdf p. 3"
