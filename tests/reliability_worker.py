"""A writer process for the reliability tests: ``python reliability_worker.py INDEX CMD ...``.

Commands: ``create`` (a BM25 index); ``add FILE...``; ``delete DOC_ID...``; ``rounds JSON``
(a list of ``{"add": [files], "delete": [doc_ids]}``, done in order). Prints one JSON line
per finished step: ``{"t": unix time, "event": "added" | "deleted", ...}``.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    from mm_retriever.index import MultimodalIndex

    index_path, cmd, *args = argv
    if cmd == "create":  # a new BM25 index (the crash points of create)
        from reliability_harness import bm25_config

        MultimodalIndex.create(index_path, bm25_config())
        print(json.dumps({"t": time.time(), "event": "created"}), flush=True)
        return 0
    index = MultimodalIndex.open(index_path)
    index.lock_timeout = 600
    if cmd == "add":
        rounds = [{"add": args}]
    elif cmd == "delete":
        rounds = [{"delete": args}]
    elif cmd == "rounds":
        rounds = json.loads(args[0])
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    for step in rounds:
        if step.get("add"):
            report = index.add(step["add"])
            print(
                json.dumps(
                    {
                        "t": time.time(),
                        "event": "added",
                        "added": [report.doc_ids[p] for p in report.added],
                        "unchanged": [report.doc_ids[p] for p in report.unchanged],
                        "failed": report.failed,
                    }
                ),
                flush=True,
            )
        for doc_id in step.get("delete", []):
            try:
                index.delete(doc_id)
                print(json.dumps({"t": time.time(), "event": "deleted", "doc_id": doc_id}))
            except KeyError:
                print(json.dumps({"t": time.time(), "event": "absent", "doc_id": doc_id}))
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
