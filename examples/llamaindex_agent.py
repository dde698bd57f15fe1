"""A LlamaIndex agent with mm-retriever as its search tool over a folder of PDFs.

    uv run python examples/llamaindex_agent.py -q "Which region had the highest revenue?"

The agent (``FunctionAgent``) decides when to call ``search_pdfs``, a ``RetrieverTool`` over
``MMRetriever``; the tool returns the pages' text with their citations. Without
OPENAI_API_KEY/OPENAI_MODEL it runs the tool itself and prints what the agent would receive
(see examples/_common.py).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from _common import NO_LLM, base_parser, llamaindex_llm, llm_settings, open_index
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.tools import RetrieverTool
from llama_index.retrievers.mm_retriever import MMRetriever

SYSTEM = (
    "You answer questions about a collection of PDF reports. Always search them with the "
    "search_pdfs tool first, then answer briefly and cite the file and page of each fact."
)


def search_tool(retriever: MMRetriever) -> RetrieverTool:
    return RetrieverTool.from_defaults(
        retriever=retriever,
        name="search_pdfs",
        description=(
            "Search the PDF pages (text, tables, charts and figures). Input: a question or "
            "keywords. Output: the best pages with file name and page number."
        ),
    )


def make_agent(retriever: MMRetriever, llm: Any) -> FunctionAgent:
    return FunctionAgent(
        tools=[search_tool(retriever)], llm=llm, system_prompt=SYSTEM, streaming=False
    )


async def ask(agent: FunctionAgent, question: str) -> str:
    return str(await agent.run(question))


def main(argv: list[str] | None = None) -> list[Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-q", "--question", action="append", help="question (repeatable)")
    args = parser.parse_args(argv)
    questions = args.question or ["Which region had the highest revenue, and how much?"]

    index = open_index(args.folder, args.index)
    # the tool returns text to the agent: figure crops stay in the page image nodes' metadata
    retriever = MMRetriever(index=index, similarity_top_k=args.k, figures=False)
    settings = llm_settings()
    agent = make_agent(retriever, llamaindex_llm(settings)) if settings else None
    results = []
    for question in questions:
        print(f"user> {question}")
        if agent is None:
            output = search_tool(retriever).call(input=question)
            print(f"  search_pdfs would return {len(output.raw_output)} nodes:")
            for n in output.raw_output:
                m = n.node.metadata
                print(f"    {type(n.node).__name__:9} {m['citation']}  score {n.score:.4f}")
            results.append(output)
        else:
            reply = asyncio.run(ask(agent, question))
            print(f"agent> {reply}\n")
            results.append(reply)
    if agent is None:
        print(NO_LLM)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
