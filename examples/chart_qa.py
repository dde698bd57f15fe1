"""Question answering over PDFs with charts: retrieved pages, figure crops, a cited answer.

    uv run python examples/chart_qa.py
    uv run python examples/chart_qa.py -q "What was the rainfall in the wettest month?" --out crops/

For each question it prints the retrieved pages (fused score, each leg's rank) and their matched
figure crops (caption, box on the page), saves page images and crops to ``--out``, and builds
OpenAI-style messages (text + downscaled base64 images) with numbered citations. With
OPENAI_API_KEY/OPENAI_MODEL set it sends them to the endpoint and prints the cited answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _common import NO_LLM, base_parser, llm_settings, open_client, open_index

from mm_retriever.context import ContextBudget, build_sources, to_openai_messages
from mm_retriever.context.files import save_figure_image, save_page_image

QUESTIONS = [
    "How much did solar capacity grow according to the chart?",
    "What does the rainfall chart show for the wettest month?",
]


def show(sources: list[Any], out: Path) -> None:
    for src in sources:
        page = src.page
        legs = ", ".join(f"{leg} #{rank}" for leg, rank in sorted(page.leg_ranks.items()))
        saved = save_page_image(page, out, reuse_existing=False)
        print(f"  {src.citation}  score {page.score:.4f}  ({legs})  image: {saved}")
        for fig in page.figures:
            box = ", ".join(f"{v:.0f}" for v in fig.bbox)
            crop = save_figure_image(page, fig, out)
            print(f"      figure {fig.figure_index}: {fig.caption or '(no caption)'}")
            print(f"        box [{box}] pt, score {fig.score:.3f}, crop: {crop}")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("-q", "--question", action="append", help="question (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("chart_qa_out"), help="crops folder")
    parser.add_argument("--max-image-side", type=int, default=1024)
    args = parser.parse_args(argv)

    index = open_index(args.folder, args.index)
    retriever = index.retriever()
    budget = ContextBudget(max_pages=args.k, max_image_side=args.max_image_side)
    settings = llm_settings()
    client = open_client(settings) if settings else None
    results = []
    for question in args.question or QUESTIONS:
        print(f"\nQ: {question}")
        pages = retriever.retrieve(question, k=args.k)
        sources = build_sources(pages, budget)
        show(sources, args.out)
        messages = to_openai_messages(question, sources, budget)
        n_images = sum(p["type"] == "image_url" for p in messages[-1]["content"])
        print(f"  {len(sources)} sources, {n_images} images in the prompt")
        result = {"question": question, "sources": sources, "messages": messages}
        if client is not None:
            reply = client.chat.completions.create(model=settings["model"], messages=messages)
            result["answer"] = reply.choices[0].message.content
            print(f"A: {result['answer']}")
            print("   " + "\n   ".join(s.citation for s in sources))
        results.append(result)
    if client is None:
        print(f"\n{NO_LLM}")
    print(f"page images and figure crops saved in {args.out.resolve()}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
