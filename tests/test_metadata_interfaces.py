"""Metadata and own ids through the CLI, the HTTP service and the MCP server (a BM25 index)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pdfgen import make_sample_pdf
from typer.testing import CliRunner

from mm_retriever.cli import app
from mm_retriever.index import MultimodalIndex
from mm_retriever.serve import ServeSettings, create_app

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def cli_error(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    return result.output


@pytest.fixture
def docs(tmp_path: Path) -> dict[str, Path]:
    return {
        "fleet": make_sample_pdf(tmp_path / "docs" / "fleet.pdf", ["The fleet has 47 ferries."]),
        "canal": make_sample_pdf(tmp_path / "docs" / "canal.pdf", ["Canal ferries began 1887."]),
        "copy": make_sample_pdf(tmp_path / "b" / "fleet.pdf", ["Another fleet of 12 ferries."]),
    }


def test_cli_metadata_ids_search_set_and_delete(tmp_path: Path, docs) -> None:
    index = tmp_path / "idx"
    base = ["--index", index, "--leg", "bm25", "--ocr", "never", "--dpi", "72"]
    out = cli(
        "index", docs["fleet"], *base, "--doc-id", "court-filing", "--metadata", "year=2021",
        "--metadata", "date=2021-03-04", "--metadata", "flag=true", "--metadata", "tenant=acme",
    )  # fmt: skip
    assert "indexed 1 document(s)" in out
    cli("index", docs["canal"], docs["copy"], *base, "--metadata", "tenant=globex")
    assert "not a valid ISO date" in cli_error(
        "index", docs["canal"], *base, "--metadata", "d=2021-02-30"
    )
    assert "key=value" in cli_error("index", docs["canal"], *base, "--metadata", "tenant")

    idx = MultimodalIndex.open(index)
    meta = {d["doc_id"]: d["metadata"] for d in idx.documents()}
    assert meta["court-filing"] == {
        "year": 2021,
        "date": "2021-03-04",
        "flag": True,
        "tenant": "acme",
    }
    assert "court-filing" in cli("info", "--index", index)

    hits = json.loads(
        cli("search", "ferries", "--index", index, "--json", "--metadata", "tenant=acme")
    )
    assert [h["doc_id"] for h in hits] == ["court-filing"]
    assert hits[0]["metadata"]["date"] == "2021-03-04"
    both = ["--metadata", "tenant=globex", "--metadata", "year=2021"]
    assert json.loads(cli("search", "ferries", "--index", index, "--json", *both)) == []
    hits = json.loads(
        cli("search", "ferries", "--index", index, "--json", "--metadata", "flag=true")
    )
    assert {h["doc_id"] for h in hits} == {"court-filing"}

    out = cli(
        "set-metadata",
        "canal.pdf",
        "--index",
        index,
        "--metadata",
        "year=2020",
        "--unset",
        "tenant",
    )
    assert json.loads(out.splitlines()[-1]) == {"year": 2020}
    assert "give --metadata" in cli_error("set-metadata", "canal.pdf", "--index", index)
    hits = json.loads(
        cli("search", "ferries", "--index", index, "--json", "--metadata", "year=2020")
    )
    assert {h["source"] for h in hits} == {str(docs["canal"])}

    assert "names 2 documents" in cli_error("delete", "fleet.pdf", "--index", index)
    assert "no document with id, path or file name 'nope.pdf'" in cli_error(
        "delete", "nope.pdf", "--index", index
    )
    assert len(MultimodalIndex.open(index)) == 3  # nothing was deleted
    out = cli("delete", str(docs["copy"]), "court-filing", "--index", index)
    assert f"({docs['copy']}, 1 page(s))" in out and "deleted court-filing (" in out
    assert [d["source"] for d in MultimodalIndex.open(index).documents()] == [str(docs["canal"])]


def wait_job(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_http_upload_fields_filters_documents_and_patch(tmp_path: Path, docs) -> None:
    from shared_fixtures import bm25_index

    bm25_index(tmp_path / "idx")
    with TestClient(create_app(ServeSettings(index=str(tmp_path / "idx")))) as client:
        with docs["fleet"].open("rb") as f:
            r = client.post(
                "/documents",
                files=[("files", ("fleet.pdf", f, "application/pdf"))],
                data={"metadata": ["tenant=acme", "year=2021", '{"tags": ["q3", "board"]}'],
                      "doc_id": "fleet-2021"},
            )  # fmt: skip
        assert r.status_code == 202, r.text
        assert wait_job(client, r.json()["job_id"])["added"][0]["doc_id"] == "fleet-2021"
        with docs["canal"].open("rb") as f:
            r = client.post(
                "/documents",
                files=[("files", ("canal.pdf", f, "application/pdf"))],
                data={"metadata": ["tenant=globex"]},
            )
        wait_job(client, r.json()["job_id"])
        with docs["canal"].open("rb") as f:
            bad = client.post(
                "/documents",
                files=[("files", ("canal.pdf", f, "application/pdf"))],
                data={"metadata": ["=x"]},
            )
        assert bad.status_code == 422 and "key=value" in bad.json()["detail"]

        listed = {d["doc_id"]: d["metadata"] for d in client.get("/documents").json()}
        assert listed["fleet-2021"] == {"tenant": "acme", "year": 2021, "tags": ["q3", "board"]}

        def search(filters: dict) -> list[dict]:
            r = client.post("/search", json={"query": "ferries", "k": 5, "filters": filters})
            assert r.status_code == 200, r.text
            return r.json()

        hits = search({"metadata": {"tags": {"in": ["board"]}, "year": {"gte": 2021}}})
        assert [h["doc_id"] for h in hits] == ["fleet-2021"] and hits[0]["metadata"]["year"] == 2021
        assert {h["metadata"]["tenant"] for h in search({})} == {"acme", "globex"}
        r = client.post("/search", json={"query": "x", "filters": {"metadata": {"y": {"from": 1}}}})
        assert r.status_code == 422 and "'y': unknown operator" in r.json()["detail"]

        r = client.patch("/documents/fleet-2021/metadata", json={"metadata": {"tenant": "initech"}})
        assert r.status_code == 202, r.text
        job = wait_job(client, r.json()["job_id"])
        assert job["status"] == "done" and job["metadata"]["tenant"] == "initech"
        assert [h["doc_id"] for h in search({"metadata": {"tenant": "initech"}})] == ["fleet-2021"]
        assert client.patch("/documents/nope/metadata", json={"metadata": {}}).status_code == 404
        r = client.patch("/documents/fleet-2021/metadata", json={"metadata": {"a": {"b": 1}}})
        assert r.status_code == 422 and "'a'" in r.json()["detail"]


async def test_mcp_search_takes_filters_and_shows_metadata(tmp_path: Path, docs) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from shared_fixtures import bm25_index

    index = bm25_index(tmp_path / "idx")
    index.add(docs["fleet"], metadata={"tenant": "acme", "year": 2021}, doc_id="fleet-2021")
    index.add(docs["canal"], metadata={"tenant": "globex"})
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mm_retriever.cli", "mcp", "--index", str(tmp_path / "idx")],
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    acme = {"metadata": {"tenant": "acme"}}
    calls = [
        ("search", {"query": "ferries", "images": False, "filters": acme}),
        ("search", {"query": "ferries", "filters": {"metadata": {"year": {"between": 1}}}}),
        ("list_documents", {}),
    ]
    with open(tmp_path / "mcp-stderr.log", "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            hits, bad, listed = [await session.call_tool(name, args) for name, args in calls]
    assert not hits.is_error and len(hits.content) == 1
    assert "doc_id: fleet-2021" in hits.content[0].text
    assert 'metadata: {"tenant": "acme", "year": 2021}' in hits.content[0].text
    assert bad.is_error and "'year': unknown operator" in bad.content[0].text
    assert {d["doc_id"]: d["metadata"] for d in json.loads(listed.content[0].text)}[
        "fleet-2021"
    ] == {"tenant": "acme", "year": 2021}
