"""Extract header-propagated table text (mm_retriever.ingest.tables) from PDFs into a JSON cache.

    uv run --frozen python benchmarks/extract_tables.py OUT.json PDF [PDF ...]

Writes ``{file name: {page index: table text}}`` plus seconds per page, so table experiments
(benchmarks/table_text_bm25.py) can reuse an existing index's page text without re-ingesting.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pymupdf

from mm_retriever.ingest.tables import extract_tables


def main() -> None:
    out, pdfs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    data: dict = {"tables": {}, "pages": 0, "seconds": 0.0}
    for pdf in pdfs:
        pages: dict[str, str] = {}
        with pymupdf.open(pdf) as doc:
            for i, page in enumerate(doc):
                t0 = time.perf_counter()
                tables = extract_tables(page)
                data["seconds"] += time.perf_counter() - t0
                data["pages"] += 1
                if tables:
                    pages[str(i)] = "\n\n".join(t.text for t in tables)
        data["tables"][pdf.name] = pages
        print(f"{pdf.name}: {len(pages)} pages with tables", flush=True)
        out.write_text(json.dumps(data, indent=1))  # after each document: usable while running
    print(f"{data['pages']} pages, {data['seconds'] / max(data['pages'], 1):.2f} s/page")


if __name__ == "__main__":
    main()
