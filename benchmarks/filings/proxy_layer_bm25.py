"""A cheap stand-in for an index's leg rankings: BM25 over each PDF's text layer.

Writes (1) every page's PyMuPDF text as JSON (doc = file name -> page texts) and (2) a leg cache
in the layout of ``benchmarks/tune_fusion.py --cache``: one leg, ``bm25`` (bm25s, English stop
words and stemmer, pages as units, the question cleaned and expanded as the retriever does),
top 50 pages a query within the document and corpus-wide, and the document prior's whole-document
BM25 scores (title boost 3). ``tune_filing_prior.py --cache ... --texts ...`` then scores the
filing prior on it. Used while the data set's default index (OCR, MiniLM) was still being built.

    uv run --frozen python benchmarks/filings/proxy_layer_bm25.py ../shared/data/financebench-dev \\
        /tmp/fb_text.json /tmp/fb_proxy_legs.pkl
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import bm25s
import numpy as np
import pymupdf
import Stemmer

from mm_retriever.eval.datasets import load_dataset
from mm_retriever.legs.bm25 import fold_ascii
from mm_retriever.query.query_expansion import expand_query
from mm_retriever.query.query_text import retrieval_text
from mm_retriever.ranking.document_prior import document_text
from mm_retriever.types import LegHit

CANDIDATES = 50


def main() -> None:
    dataset, texts_out, cache_out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    ds = load_dataset(dataset)
    texts = {}
    for f in sorted(ds.files, key=lambda p: p.name):
        with pymupdf.open(f) as doc:
            texts[f.name] = [page.get_text() for page in doc]
    texts_out.write_text(json.dumps(texts))
    stemmer = Stemmer.Stemmer("english")

    def tok(xs: list[str]) -> list[list[str]]:
        return bm25s.tokenize(
            [fold_ascii(x) for x in xs],
            lower=True,
            stopwords="en",
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )

    keys = [(d, i) for d in sorted(texts) for i in range(len(texts[d]))]
    pages = bm25s.BM25()
    pages.index(tok([texts[d][i] for d, i in keys]), show_progress=False)
    docs = sorted(texts)
    whole = bm25s.BM25()
    whole.index(tok([document_text("", d, texts[d]) for d in docs]), show_progress=False)
    cache: dict = {"legs": {"within-doc": {}, "corpus": {}}, "docs": {3: {}}}
    for q in ds.queries:
        text = expand_query(retrieval_text(q.text))
        terms = [w for w in tok([text])[0] if w in pages.vocab_dict]
        s = np.asarray(pages.get_scores(terms)) if terms else np.zeros(len(keys))
        for scope in ("within-doc", "corpus"):
            idx = [i for i, k in enumerate(keys) if scope == "corpus" or k[0] == q.doc]
            best = sorted(idx, key=lambda i: -s[i])[:CANDIDATES]
            cache["legs"][scope][q.query_id] = {
                "bm25": [LegHit(keys[i][0], keys[i][1], float(s[i])) for i in best]
            }
        terms = [w for w in tok([text])[0] if w in whole.vocab_dict]
        d_s = np.asarray(whole.get_scores(terms)) if terms else np.zeros(len(docs))
        cache["docs"][3][q.query_id] = {d: float(v) for d, v in zip(docs, d_s, strict=True) if v}
    cache["view"] = {"doc_ids": {d: d for d in docs}}
    cache_out.write_bytes(pickle.dumps(cache))
    print(f"{len(ds.queries)} queries, {len(keys)} pages", flush=True)


if __name__ == "__main__":
    main()
