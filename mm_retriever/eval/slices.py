"""Named query subsets (slices) for reports: financial filings and one slice per document type.

A query belongs to ``filings`` when its document is an SEC filing, recognised by ``10-K``/``10-Q``
in the file name (``NIKE_2021_10K.pdf``, ``acme-10-q-2023.pdf``), and to ``doc_type:<type>``
when the data set gives the document's type (MMLongBench-Doc's ``doc_type``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mm_retriever.eval.datasets import EvalQuery

FILINGS = "filings"
_FILING_NAME = re.compile(r"(?:^|[^a-z0-9])10-?[kq](?:[^a-z0-9]|$)", re.IGNORECASE)


def is_filing(doc_name: str | None) -> bool:
    """True for a 10-K / 10-Q file name."""
    return bool(doc_name) and bool(_FILING_NAME.search(doc_name or ""))


def query_slices(queries: Iterable[EvalQuery]) -> dict[str, list[str]]:
    """``{query_id: [slice, ...]}`` for every query (an empty list when it is in none)."""
    out: dict[str, list[str]] = {}
    for q in queries:
        names = [FILINGS] if is_filing(q.doc) else []
        if q.doc_type:
            names.append(f"doc_type:{q.doc_type}")
        out[q.query_id] = names
    return out
