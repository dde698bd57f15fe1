"""Ingestion on Ray Data: the same write transaction as ``IndexWriter``, scaled out.

The driver holds the writer lock (``MultimodalIndex._writing``: fresh tables, crashed writes
recovered) for the whole run. Stages:

1. **probe** (CPU tasks): open and hash each file (``DocumentReader``); a bad file becomes a
   failure row. The driver skips documents already committed and marks every new one pending
   (one write) before any of its rows exists.
2. **read** (CPU tasks, ``num_cpus=cpus_per_reader``): each file's pages in batches (render,
   text layer, figures, OCR), pickled per page (PIL images included, pixels exact).
3. **encode** (one actor pool per leg, ``num_gpus=gpus_per_encoder`` when set): each actor builds
   its leg once from the index's stored leg settings and adds that leg's rows to each page.
4. **write** (CPU tasks): the rows of ``pages``, ``figures`` and every leg table (built by the
   same functions as the local writer) written as Lance fragments (``write_fragments``); only
   the fragments' metadata goes back to the driver.
5. **commit** (driver, single): every table's fragments appended with one Lance commit per
   table, then the ``documents`` rows of the complete documents in one write (the commit
   marker: a document is visible only once all its rows are), then their pending markers
   removed. This repeats every ``commit_every`` complete documents, so a long run keeps its
   progress. Documents that failed in any stage are reported; their rows are deleted.

A driver that dies leaves uncommitted fragment files (never part of a table version, so never
read) and pending markers: the next write undoes exactly those documents; a re-run adds them
again, without duplicates. Ray retries tasks and restarts actors whose worker died.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from mm_retriever import faults
from mm_retriever.config import IndexConfig, IngestConfig, LegSpec
from mm_retriever.errors import IngestError, MissingExtraError, MMRetrieverError
from mm_retriever.index.filing_fields import write_filing_fields
from mm_retriever.index.rows import document_row, source_rows
from mm_retriever.index.writer import (
    IngestReport,
    keeps_sources,
    page_table_rows,
    table_schemas,
)
from mm_retriever.ranking.document_prior import write_document_texts
from mm_retriever.store import DOCUMENTS, SOURCES, LanceDBStore, leg_table
from mm_retriever.store.arrow import rows_to_table
from mm_retriever.store.filters import quote_string
from mm_retriever.store.lancedb_store import writer_id
from mm_retriever.store.schema import (
    DOCUMENTS_SCHEMA,
    PENDING,
    PENDING_SCHEMA,
    now_iso,
)

if TYPE_CHECKING:
    from mm_retriever.protocols import Leg

log = logging.getLogger("mm_retriever")

ROWS = "rows:"  # column prefix of a leg's rows for a page (pickled list of dicts)
SECONDS = "seconds:"  # column prefix of a stage's seconds spent per page


@dataclass
class RayOptions:
    """How to run an add on Ray (``MultimodalIndex.add(engine="ray", ...)``).

    ``address``: ``None`` (connect to the Ray already initialised in this process, else start a
    local one), ``"auto"`` (the cluster this node belongs to) or ``"ray://host:10001"``.
    ``cpus_per_reader``: CPUs per read task (rendering, OCR). ``gpus_per_encoder``: GPUs (or a
    fraction) per encoder actor; ``None``/0: encoders on CPU with ``cpus_per_encoder`` each
    (``None``: 1, or less on a cluster too small to hold one actor per leg and a reader).
    ``encoders_per_leg``: actors per leg pool (``None``: autoscale from 1 up to the cluster).
    ``commit_every``: commit after this many complete documents (progress kept on a crash).
    ``memory_per_reader``: bytes of memory Ray reserves per read task (rendering, OCR).
    """

    address: str | None = None
    cpus_per_reader: float = 1.0
    gpus_per_encoder: float | None = None
    cpus_per_encoder: float | None = None
    encoders_per_leg: int | None = None
    read_batch_pages: int = 8
    encode_batch_pages: int = 32
    write_batch_pages: int = 64
    commit_every: int = 256
    memory_per_reader: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.cpus_per_reader <= 0:
            raise ValueError("cpus_per_reader must be positive")
        if self.gpus_per_encoder is not None and self.gpus_per_encoder < 0:
            raise ValueError("gpus_per_encoder must not be negative")
        if self.cpus_per_encoder is not None and self.cpus_per_encoder <= 0:
            raise ValueError("cpus_per_encoder must be positive")
        if self.memory_per_reader < 1:
            raise ValueError("memory_per_reader must be positive")
        if self.commit_every < 1:
            raise ValueError("commit_every must be at least 1")


def require_ray() -> Any:
    """The ``ray`` module, or ``MissingExtraError`` naming the extra to install."""
    # Ray's `uv run` hook would ship this folder and build a venv per worker; workers of a
    # local Ray use this interpreter. Set RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 to keep the hook.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import lance  # noqa: F401  (fragment writes and commits)
        import ray
        import ray.data
    except ImportError as exc:
        err = MissingExtraError(exc.name or "ray", "ray", "engine='ray' / --engine ray")
        err.msg = f"{err.args[0]} (in a checkout of mm-retriever: uv sync --extra ray)"
        err.args = (err.msg,)
        raise err from exc
    return ray


# ---------------------------------------------------------------------------- worker stages
def _path(raw: bytes) -> Path:
    return Path(os.fsdecode(raw))


def probe_files(batch: pa.Table, ingest: dict[str, Any]) -> pa.Table:
    """Stage 1: open, validate and hash each file; its document header or the failure."""
    from mm_retriever.ingest import DocumentReader

    config = IngestConfig.model_validate(ingest)
    out: dict[str, list[Any]] = defaultdict(list)
    for raw in batch.column("path").to_pylist():
        t0 = time.perf_counter()
        doc_id = header = warning = error = None
        n_pages = 0
        try:
            with DocumentReader(_path(raw), config) as reader:
                doc_id, n_pages = reader.doc_id, reader.n_pages
                header = pickle.dumps(reader.document())
                warning = reader.warning
        except IngestError as exc:
            error = exc.reason
        except Exception as exc:  # an unexpected reader bug: this file fails, the run goes on
            error = f"{type(exc).__name__}: {exc}"
        out["path"].append(raw)
        out["doc_id"].append(doc_id)
        out["n_pages"].append(n_pages)
        out["header"].append(header)
        out["warning"].append(warning)
        out["error"].append(error)
        out["seconds"].append(time.perf_counter() - t0)
    return pa.table(
        out,
        schema=pa.schema(
            [
                ("path", pa.binary()),
                ("doc_id", pa.string()),
                ("n_pages", pa.int64()),
                ("header", pa.binary()),
                ("warning", pa.string()),
                ("error", pa.string()),
                ("seconds", pa.float64()),
            ]
        ),
    )


PAGE_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("page_index", pa.int64()),
        ("page", pa.binary()),  # pickled Page (None: the document failed here)
        ("error", pa.string()),
        (SECONDS + "read", pa.float64()),
    ]
)


def _page_table(doc_id: str, pages: list[Any], seconds: float) -> pa.Table:
    share = seconds / max(1, len(pages))
    return pa.table(
        {
            "doc_id": [doc_id] * len(pages),
            "page_index": [p.page_index for p in pages],
            "page": [pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL) for p in pages],
            "error": [None] * len(pages),
            SECONDS + "read": [share] * len(pages),
        },
        schema=PAGE_SCHEMA,
    )


def _failure_table(doc_id: str, reason: str) -> pa.Table:
    return pa.table(
        {
            "doc_id": [doc_id],
            "page_index": [-1],
            "page": [None],
            "error": [reason],
            SECONDS + "read": [0.0],
        },
        schema=PAGE_SCHEMA,
    )


def read_pages(batch: pa.Table, ingest: dict[str, Any], batch_pages: int) -> Iterator[pa.Table]:
    """Stage 2: yield each file's pages in batches; a failure becomes one error row."""
    from mm_retriever.ingest import DocumentReader

    config = IngestConfig.model_validate(ingest)
    for raw, doc_id in zip(
        batch.column("path").to_pylist(), batch.column("doc_id").to_pylist(), strict=True
    ):
        faults.point("ray:read")
        try:
            t0 = time.perf_counter()
            with DocumentReader(_path(raw), config) as reader:
                if reader.doc_id != doc_id:
                    yield _failure_table(doc_id, "the file changed while it was being indexed")
                    continue
                pages = iter(reader.pages(batch_size=batch_pages))
                while True:
                    batch_of_pages = next(pages, None)
                    if batch_of_pages is None:
                        break
                    yield _page_table(doc_id, batch_of_pages, time.perf_counter() - t0)
                    t0 = time.perf_counter()
        except IngestError as exc:
            yield _failure_table(doc_id, exc.reason)
        except Exception as exc:  # this document fails, the run goes on
            yield _failure_table(doc_id, f"{type(exc).__name__}: {exc}")


def _pages_of(batch: pa.Table) -> list[Any]:
    """The unpickled pages of a batch (None where the row is a failure). Only this job's own
    read stage writes these columns (pickle is how Ray itself moves Python objects); nothing
    pickled is ever stored in or read from an index."""
    return [
        pickle.loads(raw) if raw is not None and err is None else None
        for raw, err in zip(
            batch.column("page").to_pylist(), batch.column("error").to_pylist(), strict=True
        )
    ]


class EncodeLeg:
    """Stage 3: one leg's encoder, built once per actor from the index's stored leg spec."""

    def __init__(self, spec: dict[str, Any], device: str | None) -> None:
        from mm_retriever.index.legs import build_leg

        self.spec = LegSpec.model_validate(spec)
        self.leg: Leg = build_leg(self.spec, device)
        self.column = ROWS + leg_table(self.spec.leg_name)
        self.seconds = SECONDS + "encode:" + self.spec.leg_name

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        pages = _pages_of(batch)
        ok = [i for i, p in enumerate(pages) if p is not None]
        per_page: list[list[dict[str, Any]]] = [[] for _ in pages]
        errors = batch.column("error").to_pylist()
        if ok:
            try:
                rows = self.leg.rows([pages[i] for i in ok])
            except Exception as exc:  # these pages' documents fail, the run goes on
                reason = f"encoding ({self.spec.leg_name}): {type(exc).__name__}: {exc}"
                for i in ok:
                    errors[i] = reason
            else:
                where = {(pages[i].doc_id, pages[i].page_index): i for i in ok}
                for row in rows:  # rows of a page travel with it (any other: the first page)
                    key = (row.get("doc_id"), row.get("page_index"))
                    per_page[where.get(key, ok[0])].append(row)
        faults.point(f"ray:encode:{self.spec.leg_name}")
        share = (time.perf_counter() - t0) / max(1, len(pages))
        batch = batch.set_column(
            batch.schema.get_field_index("error"), "error", pa.array(errors, pa.string())
        )
        batch = batch.append_column(
            self.column, pa.array([pickle.dumps(r) for r in per_page], pa.binary())
        )
        return batch.append_column(self.seconds, pa.array([share] * len(pages), pa.float64()))


def write_fragments(
    batch: pa.Table,
    tables: dict[str, tuple[str, bytes]],
    ingest: dict[str, Any],
    storage_options: dict[str, str] | None,
    sources: dict[str, bytes] | None = None,
) -> pa.Table:
    """Stage 4: every table's rows of these pages written as Lance fragments (uncommitted).

    ``tables``: table name -> (dataset URI, Arrow IPC schema bytes). ``sources``: doc_id -> file
    path when documents keep their source file (written with their first page; page images and
    crops are then not stored). Returns one row: the fragments per table (pickled), pages
    written per document, failures, seconds per stage.
    """
    from lance.fragment import write_fragments as lance_write

    t0 = time.perf_counter()
    config = IngestConfig.model_validate(ingest)
    pages = _pages_of(batch)
    errors = batch.column("error").to_pylist()
    doc_ids = batch.column("doc_id").to_pylist()
    failed = {d: e for d, e in zip(doc_ids, errors, strict=True) if e is not None}
    ok = [i for i, p in enumerate(pages) if p is not None and errors[i] is None]
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if sources is not None:
        for i in [i for i in ok if pages[i].page_index == 0]:
            doc_id = doc_ids[i]
            try:
                rows[SOURCES].extend(
                    source_rows(
                        doc_id,
                        _path(sources[doc_id]),
                        config.dpi,
                        config.image_format,
                        config.image_quality,
                    )
                )
            except Exception as exc:  # this document fails, the run goes on
                failed[doc_id] = getattr(exc, "reason", f"{type(exc).__name__}: {exc}")
        ok = [i for i in ok if doc_ids[i] not in failed]
    images = sources is None
    for table, table_rows in page_table_rows([pages[i] for i in ok], config, images=images).items():
        rows[table].extend(table_rows)
    for name in batch.schema.names:
        if name.startswith(ROWS):
            column = batch.column(name).to_pylist()
            for i in ok:
                rows[name[len(ROWS) :]].extend(pickle.loads(column[i]))
    fragments: dict[str, list[Any]] = {}
    for table, table_rows in rows.items():
        if not table_rows:
            continue
        uri, raw_schema = tables[table]
        schema = pa.ipc.read_schema(pa.py_buffer(raw_schema))
        faults.point(f"ray:write:{table}")
        fragments[table] = lance_write(
            rows_to_table(table_rows, schema), uri, schema=schema, storage_options=storage_options
        )
    n_pages: dict[str, int] = defaultdict(int)
    for i in ok:
        n_pages[doc_ids[i]] += 1
    seconds: dict[str, float] = defaultdict(float)
    for name in batch.schema.names:
        if name.startswith(SECONDS):
            seconds[name[len(SECONDS) :]] += float(sum(batch.column(name).to_pylist()))
    seconds["write"] += time.perf_counter() - t0
    return pa.table(
        {
            "fragments": [pickle.dumps(fragments)],
            "pages": [json.dumps(n_pages)],
            "failed": [json.dumps(failed)],
            "seconds": [json.dumps(seconds)],
        }
    )


# ---------------------------------------------------------------------------- the driver
@dataclass
class _Doc:
    path: str
    doc_id: str
    n_pages: int
    header: Any  # Document
    warning: str | None
    written: int = 0


@dataclass
class _Committer:
    """The driver's single commit step: fragments per table, then ``documents`` rows."""

    store: LanceDBStore
    tables: dict[str, str]  # table -> dataset URI
    storage_options: dict[str, str] | None
    docs: dict[str, _Doc]
    fragments: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    committed: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def take(self, row: Mapping[str, Any]) -> None:
        for table, frags in pickle.loads(row["fragments"]).items():
            self.fragments[table].extend(frags)
        for doc_id, n in json.loads(row["pages"]).items():
            self.docs[doc_id].written += n
        for doc_id, reason in json.loads(row["failed"]).items():
            if doc_id not in self.committed:  # a committed document keeps its rows
                self.failed.setdefault(doc_id, reason)

    def complete(self) -> list[_Doc]:
        return [
            d
            for d in self.docs.values()
            if d.doc_id not in self.committed
            and d.doc_id not in self.failed
            and d.written >= d.n_pages
        ]

    def commit(self, final: bool = False) -> None:
        """Append the fragments collected so far, then commit the complete documents."""
        import lance

        t0 = time.perf_counter()
        for table, frags in self.fragments.items():
            if not frags:
                continue
            faults.point(f"ray:commit:{table}")
            version = lance.dataset(self.tables[table], storage_options=self.storage_options)
            lance.LanceDataset.commit(
                self.tables[table],
                lance.LanceOperation.Append(frags),
                read_version=version.version,
                storage_options=self.storage_options,
            )
        self.fragments.clear()
        self.store.refresh()  # the tables' handles see the new versions
        done = self.complete()
        if final:
            for d in self.docs.values():
                if d.doc_id not in self.committed and d.doc_id not in self.failed and d not in done:
                    self.failed[d.doc_id] = f"only {d.written} of {d.n_pages} pages were read"
            self._remove_failed()
        if done:
            faults.point("ray:document_text")
            write_document_texts(
                self.store, [(d.doc_id, d.header.title, d.header.source) for d in done]
            )
            faults.point("ray:filing_fields")
            write_filing_fields(self.store, [d.doc_id for d in done])
            faults.point("ray:documents")
            rows = [document_row(d.header, d.written) for d in done]
            self.store.add(DOCUMENTS, rows, DOCUMENTS_SCHEMA)
            faults.point("ray:committed")
            self._clear_markers([d.doc_id for d in done])
            self.committed.update(d.doc_id for d in done)
        self.seconds += time.perf_counter() - t0

    def _remove_failed(self) -> None:
        """Delete every row of the failed documents, then their markers."""
        ids = sorted(self.failed)
        if not ids:
            return
        where = _in_list(ids)
        for name in self.store.doc_tables():
            tbl = self.store.table(name)
            if name != DOCUMENTS and tbl is not None and tbl.count_rows(where):
                tbl.delete(where)
        self._clear_markers(ids)

    def _clear_markers(self, doc_ids: list[str]) -> None:
        tbl = self.store.table(PENDING)
        if tbl is not None and doc_ids:
            tbl.delete(_in_list(doc_ids))


def _in_list(doc_ids: list[str]) -> str:
    return f"doc_id IN ({', '.join(quote_string(d) for d in doc_ids)})"


def connect(address: str | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and should shut it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    env = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("MM_RETRIEVER_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "OMP_"))
    }
    ray.init(
        address=address,
        runtime_env={"env_vars": env} if env else None,
        log_to_driver=False,
        include_dashboard=False if address is None else None,
    )
    return True


def _encoder_resources(options: RayOptions, n_legs: int) -> dict[str, Any]:
    import ray

    if options.gpus_per_encoder:
        return {"num_gpus": options.gpus_per_encoder, "num_cpus": options.cpus_per_encoder or 1}
    cpus = options.cpus_per_encoder
    if cpus is None:  # one actor per leg plus one reader must fit, or the pipeline stalls
        total = float(ray.cluster_resources().get("CPU", 1))
        cpus = min(1.0, (total - options.cpus_per_reader) / max(1, n_legs))
        cpus = max(cpus, 0.1)
    return {"num_cpus": cpus}


def add_with_ray(
    store: LanceDBStore,
    config: IndexConfig,
    legs: Mapping[str, Leg],
    files: list[Path],
    report: IngestReport,
    options: RayOptions,
    progress: bool = False,
) -> None:
    """Add ``files`` to the index on Ray (call under the writer lock, like ``IndexWriter``)."""
    ray = require_ray()
    if not files:
        return
    started = connect(options.address)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = progress
        _run(ray, store, config, legs, files, report, options)
    finally:
        if started:
            ray.shutdown()


def _run(
    ray: Any,
    store: LanceDBStore,
    config: IndexConfig,
    legs: Mapping[str, Leg],
    files: list[Path],
    report: IngestReport,
    options: RayOptions,
) -> None:
    ingest = config.ingest.model_dump(mode="json")
    timings: dict[str, float] = defaultdict(float)

    # 1. probe: hash and validate every file on the cluster; skip what is committed
    t0 = time.perf_counter()
    probe = ray.data.from_items([{"path": os.fsencode(p)} for p in files]).map_batches(
        probe_files,
        batch_size=8,
        batch_format="pyarrow",
        fn_kwargs={"ingest": ingest},
        num_cpus=options.cpus_per_reader,
    )
    known = store.document_ids()
    new: dict[str, _Doc] = {}
    probed = {row["path"]: row for row in probe.take_all()}
    for path in files:  # in the order given: of two copies of a file, the first is added
        key, row = str(path), probed[os.fsencode(path)]
        timings["probe"] += row["seconds"]
        if row["error"] is not None:
            report.failed[key] = row["error"]
            continue
        doc_id = row["doc_id"]
        report.doc_ids[key] = doc_id
        if doc_id in known or doc_id in new:
            report.unchanged.append(key)
            continue
        header = pickle.loads(row["header"])
        new[doc_id] = _Doc(key, doc_id, row["n_pages"], header, row["warning"])
    report.timings["probe:wall"] = time.perf_counter() - t0
    if not new:
        _finish_report(report, timings)
        return

    # tables the workers write to: each one's dataset URI and exact schema
    schemas = table_schemas(legs)
    keep_sources = keeps_sources(store, config.ingest)
    if not keep_sources:  # an index of schema 1 keeps its layout
        schemas.pop(SOURCES)
    tables: dict[str, tuple[str, bytes]] = {}
    for table, schema in schemas.items():
        tbl = store.table(table)
        if tbl is None:
            if schema is None:
                raise MMRetrieverError(
                    f"table '{table}' does not exist yet and its leg declares no schema(); "
                    "add the first documents with engine='local'"
                )
            tbl = store.ensure_table(table, schema)
        dataset = tbl.to_lance()
        tables[table] = (dataset.uri, dataset.schema.serialize().to_pybytes())

    # every new document is pending before any of its rows exists (one write)
    marked = [
        {"doc_id": d, "op": "add", "started_at": now_iso(), "owner": writer_id()} for d in new
    ]
    store.add(PENDING, marked, PENDING_SCHEMA)
    faults.point("ray:marked")

    committer = _Committer(
        store, {t: u for t, (u, _) in tables.items()}, store.storage_options, new
    )
    t0 = time.perf_counter()
    work = [{"path": os.fsencode(d.path), "doc_id": d.doc_id} for d in new.values()]
    ds = ray.data.from_items(work).map_batches(
        read_pages,
        batch_size=1,
        batch_format="pyarrow",
        fn_kwargs={"ingest": ingest, "batch_pages": options.read_batch_pages},
        num_cpus=options.cpus_per_reader,
        # its own memory request also keeps Ray Data from fusing reading into the first
        # encoder's actors: reading scales as tasks of its own
        memory=options.memory_per_reader,
    )
    resources = _encoder_resources(options, len(legs))
    device = "cuda" if options.gpus_per_encoder else config.device
    specs = {s.leg_name: s for s in config.legs}
    for name in legs:
        size = options.encoders_per_leg
        ds = ds.map_batches(
            EncodeLeg,
            batch_size=options.encode_batch_pages,
            batch_format="pyarrow",
            fn_constructor_kwargs={"spec": specs[name].model_dump(mode="json"), "device": device},
            compute=ray.data.ActorPoolStrategy(min_size=size or 1, max_size=size or None),
            **resources,
        )
    ds = ds.map_batches(
        write_fragments,
        batch_size=options.write_batch_pages,
        batch_format="pyarrow",
        fn_kwargs={
            "tables": tables,
            "ingest": ingest,
            "storage_options": store.storage_options,
            "sources": {d.doc_id: os.fsencode(d.path) for d in new.values()}
            if keep_sources
            else None,
        },
        num_cpus=options.cpus_per_reader,
    )
    for row in ds.iter_rows():
        faults.point("ray:batch")
        committer.take(row)
        for stage, seconds in json.loads(row["seconds"]).items():
            timings[stage] += seconds
        if len(committer.complete()) >= options.commit_every:
            committer.commit()
    report.timings["pipeline:wall"] = time.perf_counter() - t0 - committer.seconds
    committer.commit(final=True)
    timings["commit"] += committer.seconds

    for doc in new.values():
        if doc.doc_id in committer.committed:
            report.added.append(doc.path)
            report.pages += doc.written
            if doc.warning:
                report.warnings[doc.path] = doc.warning
        else:
            reason = committer.failed.get(doc.doc_id, "not committed")
            log.warning("could not index %s: %s", doc.path, reason)
            report.failed[doc.path] = reason
            report.doc_ids.pop(doc.path, None)
    _finish_report(report, timings)


def _finish_report(report: IngestReport, timings: Mapping[str, float]) -> None:
    for stage, seconds in timings.items():
        report.timings[stage] = report.timings.get(stage, 0.0) + seconds
