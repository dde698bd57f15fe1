"""Chat over a folder of PDFs with LangChain: MMRetriever in an LCEL chain, page images included.

    uv run python examples/langchain_chatbot.py                           # interactive chat
    uv run python examples/langchain_chatbot.py -q "How fast did solar capacity grow?"
    uv run python examples/langchain_chatbot.py --folder ~/papers -q "..."

Each turn retrieves pages (text + page image), sends them with the conversation so far to a chat
model and prints the answer with its sources. Without OPENAI_API_KEY/OPENAI_MODEL it stops before
the LLM call and prints what it would send (see examples/_common.py).
"""

from __future__ import annotations

import base64
import sys
from operator import itemgetter
from typing import Any

from _common import NO_LLM, base_parser, langchain_chat_model, llm_settings, open_index
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableLambda, RunnablePassthrough
from langchain_mm_retriever import MMRetriever

from mm_retriever.context import DEFAULT_SYSTEM_PROMPT, downscale

MAX_IMAGE_SIDE = 1024


def content_blocks(question: str, docs: list[Document]) -> list[dict[str, Any]]:
    """The user turn: each page's citation and text, its page image, then the question."""
    blocks: list[dict[str, Any]] = []
    for n, doc in enumerate(docs, start=1):
        m = doc.metadata
        blocks.append({"type": "text", "text": f"[{n}] {m['citation']}\n{doc.page_content}"})
        if m.get("image_base64"):
            data, mime = downscale(base64.b64decode(m["image_base64"]), MAX_IMAGE_SIDE)
            b64 = base64.b64encode(data).decode("ascii")
            blocks.append({"type": "image", "base64": b64, "mime_type": mime})
    blocks.append({"type": "text", "text": f"Question: {question}\nCite sources like [1]."})
    return blocks


def to_messages(inputs: dict[str, Any]) -> list[BaseMessage]:
    return [
        SystemMessage(DEFAULT_SYSTEM_PROMPT),
        *inputs.get("history", []),
        HumanMessage(content=content_blocks(inputs["question"], inputs["docs"])),
    ]


def context_chain(retriever: MMRetriever) -> Runnable:
    """``{"question", "history"}`` -> adds ``docs`` (retrieved) and ``messages`` (for the LLM)."""
    return RunnablePassthrough.assign(docs=itemgetter("question") | retriever).assign(
        messages=RunnableLambda(to_messages)
    )


def chat_chain(retriever: MMRetriever, llm: Any) -> Runnable:
    """The full LCEL chain: context, then ``answer`` from the chat model."""
    return context_chain(retriever).assign(answer=itemgetter("messages") | llm | StrOutputParser())


def print_sources(docs: list[Document]) -> None:
    for n, doc in enumerate(docs, start=1):
        m = doc.metadata
        legs = ", ".join(f"{leg} #{rank}" for leg, rank in sorted(m["leg_ranks"].items()))
        print(f"  [{n}] {m['citation']}  score {m['score']:.4f}  ({legs})")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-q", "--question", action="append", help="ask and exit (repeatable)")
    args = parser.parse_args(argv)

    index = open_index(args.folder, args.index)
    retriever = MMRetriever(index=index, k=args.k, include_image_base64=True)
    settings = llm_settings()
    chain = chat_chain(retriever, langchain_chat_model(settings)) if settings else None
    if chain is None:
        print(NO_LLM)

    questions = iter(args.question) if args.question else _ask()
    history: list[BaseMessage] = []
    turns = []
    for question in questions:
        inputs = {"question": question, "history": history}
        out = chain.invoke(inputs) if chain else context_chain(retriever).invoke(inputs)
        print_sources(out["docs"])
        if chain:
            print(f"assistant> {out['answer']}\n")
            history += [HumanMessage(question), AIMessage(out["answer"])]
        else:
            images = sum(b["type"] == "image" for b in out["messages"][-1].content)
            print(f"  would send {len(out['messages'])} messages with {images} page images\n")
        turns.append(out)
    return turns


def _ask():
    while True:
        try:
            question = input("you> ").strip()
        except EOFError:
            return
        if question in ("", "exit", "quit"):
            return
        yield question


if __name__ == "__main__":
    main(sys.argv[1:])
