"""A writer process for tests/test_ray_engine.py: ``INDEX ADDRESS PATH...`` adds the paths to
the index with ``engine="ray"`` on the Ray cluster at ADDRESS, committing after every document
(``MM_RETRIEVER_CRASH_AT`` kills it at a named point of the driver, see ``mm_retriever.faults``).
"""

from __future__ import annotations

import json
import sys

from mm_retriever.index import MultimodalIndex
from mm_retriever.index.ray_engine import RayOptions


def main() -> None:
    index, address, *paths = sys.argv[1:]
    options = RayOptions(commit_every=1, write_batch_pages=1)
    report = MultimodalIndex.open(index).add(
        paths, engine="ray", ray_address=address, ray_options=options
    )
    print(json.dumps({"added": report.added, "failed": report.failed}))


if __name__ == "__main__":
    main()
