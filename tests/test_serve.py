"""The HTTP service with the real app on a real index: search, pages, overlays, documents,
background jobs through one writer, auth, limits and clear 4xx errors."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pdfgen import make_sample_pdf
from PIL import Image
from serve_helpers import CHART_QUESTION, build_text_index
from typer.testing import CliRunner

from mm_retriever.cli import app as cli_app
from mm_retriever.serve import ServeSettings, create_app

FACT = "The Vantorria ferry fleet runs exactly 53 hydrogen vessels."
_JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm_path: str) -> Path:
    return build_text_index(tmp_path_factory.mktemp("serve"), minilm_path)


@pytest.fixture(scope="module")
def client(index_dir: Path):
    with TestClient(create_app(ServeSettings(index=str(index_dir)))) as c:
        yield c


def wait_job(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_healthz_and_openapi(client: TestClient) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["documents"] == 2 and health["pages"] == 5
    assert health["legs"] == ["text", "bm25", "figure"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/search",
        "/pages/{doc_id}/{page_index}",
        "/pages/{doc_id}/{page_index}/overlay",
        "/documents",
        "/documents/{doc_id}",
        "/jobs/{job_id}",
        "/healthz",
    ):
        assert path in paths
    assert "text/html" in client.get("/").headers["content-type"]
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    ("page", "assets"),
    [
        ("/docs", ["/static/docs/swagger-ui-bundle.js", "/static/docs/swagger-ui.css"]),
        ("/redoc", ["/static/docs/redoc.standalone.js"]),
    ],
)
def test_api_docs_come_from_local_files(client: TestClient, page: str, assets: list[str]) -> None:
    html = client.get(page).text
    assert "cdn." not in html and "googleapis" not in html  # nothing from the internet
    for url in assets:
        assert f'"{url}"' in html or f"'{url}'" in html
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 10_000


def test_access_and_job_lines_are_logged(client: TestClient, caplog, tmp_path: Path) -> None:
    pdf = make_sample_pdf(tmp_path / "logged.pdf", {1: "Logged fact."}, n_pages=2)
    with caplog.at_level(logging.INFO, logger="mm_retriever.serve"):
        assert client.post("/search", json={"query": "solar", "k": 1}).status_code == 200
        assert client.post("/search", json={"query": "solar", "bogus": 1}).status_code == 422
        r = client.post("/documents", files={"files": ("notes.txt", b"hello", "text/plain")})
        assert r.status_code == 415
        job_id = client.post(
            "/documents", files={"files": ("logged.pdf", pdf.read_bytes(), "x")}
        ).json()["job_id"]
        job = wait_job(client, job_id)
        wait_job(client, client.delete(f"/documents/{job['added'][0]['doc_id']}").json()["job_id"])
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mm_retriever.serve")]
    requests = [
        dict(kv.split("=", 1) for kv in line.split())
        for line in lines
        if line.startswith("event=request ") and '"' not in line
    ]
    search = [r for r in requests if r["path"] == "/search"]
    assert [r["status"] for r in search[:2]] == ["200", "422"]
    assert all(r["method"] == "POST" and r["client"] == "testclient" for r in search)
    assert all(float(r["ms"]) >= 0 for r in requests)
    assert any(r["path"] == f"/jobs/{job_id}" and r["method"] == "GET" for r in requests)
    assert any(r["path"] == "/documents" and r["status"] == "415" for r in requests)
    rejected = next(line for line in lines if line.startswith("event=upload_rejected"))
    assert "status=415" in rejected and "reason=\"'notes.txt': unsupported file type" in rejected
    job_lines = [line for line in lines if f"job={job_id}" in line]
    assert [line.split()[0] for line in job_lines] == [
        "event=job_queued",
        "event=job_started",
        "event=job_done",
    ]
    assert "kind=add files=1 added=1 unchanged=0 failed=0 pages=2" in job_lines[2]
    assert any(line.startswith("event=job_done") and "kind=delete" in line for line in lines)


def test_search_returns_the_cli_json_plus_urls(client: TestClient, index_dir: Path) -> None:
    r = client.post("/search", json={"query": CHART_QUESTION, "k": 3})
    assert r.status_code == 200, r.text
    pages = r.json()
    cli = CliRunner().invoke(
        cli_app, ["search", CHART_QUESTION, "--index", str(index_dir), "-k", "3", "--json"]
    )
    assert cli.exit_code == 0, cli.output
    expected = json.loads(cli.stdout)
    extra = {"image_url", "overlay_url", "explain_url", "citation", "width", "height"}
    assert len(pages) == len(expected) == 3
    for got, want in zip(pages, expected, strict=True):
        assert set(got) == set(want) | extra
        figures = [{k: v for k, v in f.items() if k != "image_url"} for f in got["figures"]]
        assert {k: v for k, v in got.items() if k not in extra | {"figures"}} == {
            k: v for k, v in want.items() if k != "figures"
        }
        assert figures == want["figures"]
    top = pages[0]
    assert top["citation"] == "solar_market_outlook_2025.pdf, p. 2"
    assert top["leg_ranks"] == {"text": 1, "bm25": 1, "figure": 1}

    image = client.get(top["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    overlay = client.get(top["overlay_url"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    assert (
        Image.open(io.BytesIO(overlay.content)).size == Image.open(io.BytesIO(image.content)).size
    )
    crop = client.get(top["figures"][0]["image_url"])
    assert crop.status_code == 200 and Image.open(io.BytesIO(crop.content)).format == "PNG"
    explain = client.get(top["explain_url"]).json()
    kinds = {b["kind"] for b in explain["boxes"]}
    assert kinds == {"term", "chunk", "figure"} and explain["word_source"] == "layer"


def test_search_options_filters_legs_fusion_image(client: TestClient) -> None:
    docs = {d["name"]: d["doc_id"] for d in client.get("/documents").json()}
    water = docs["harbour_point_water_survey.pdf"]
    only = client.post(
        "/search", json={"query": CHART_QUESTION, "k": 5, "filters": {"doc_id": [water]}}
    ).json()
    assert only and {p["doc_id"] for p in only} == {water}
    bm25 = client.post("/search", json={"query": CHART_QUESTION, "legs": ["bm25"]}).json()
    assert all(set(p["leg_ranks"]) == {"bm25"} for p in bm25)
    assert "legs=bm25" in bm25[0]["overlay_url"]
    weighted = client.post("/search", json={"query": CHART_QUESTION, "fusion": "weighted"})
    assert weighted.status_code == 200 and weighted.json()[0]["page_number"] == 2
    # an image-only query: no leg of this index reads images, and the client is told so
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buf, format="PNG")
    data = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    r = client.post("/search", json={"image": data, "k": 2})
    assert r.status_code == 422 and "reads images" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "message"),
    [
        ("post", "/search", {"json": {"query": "x", "k": "five"}}, 422, "body.k"),
        ("post", "/search", {"json": {"query": "x", "k": 0}}, 422, "from 1 to 100, got 0"),
        ("post", "/search", {"json": {"query": "x", "k": 500}}, 422, "from 1 to 100, got 500"),
        ("post", "/search", {"json": {"query": "x" * 5000}}, 422, "5000 characters long; the"),
        ("post", "/search", {"json": {"query": "x", "min_score": 2}}, 422, "from 0 to 1"),
        ("post", "/search", {"json": {"query": "  "}}, 422, "text query, an image"),
        ("post", "/search", {"json": {"query": 5}}, 422, "body.query"),
        ("post", "/search", {"json": {"query": "x", "bogus": 1}}, 422, "bogus"),
        ("post", "/search", {"json": {"query": "x", "filters": {"nope": 1}}}, 422, "nope"),
        (
            "post",
            "/search",
            {"json": {"query": "x", "filters": {"page_index": {"near": 2}}}},
            422,
            "unknown operator",
        ),
        ("post", "/search", {"json": {"query": "x", "filters": {"page_index": "two"}}}, 422, "int"),
        ("post", "/search", {"json": {"query": "x", "legs": ["page"]}}, 422, "unknown leg"),
        ("post", "/search", {"json": {"query": "x", "fusion": "magic"}}, 422, "body.fusion"),
        ("post", "/search", {"json": {"query": "x", "image": "!!notbase64"}}, 422, "base64"),
        ("post", "/search", {"json": {"image": base64.b64encode(b"abc").decode()}}, 422, "PNG"),
        ("post", "/search", {"content": b"{not json", "headers": _JSON}, 422, "JSON"),
        ("post", "/search", {"content": b"x" * 3_000_000, "headers": _JSON}, 413, "limit"),
        ("get", "/pages/0000000000000000/0", {}, 404, "no document"),
        ("get", "/pages/..%2F..%2Fetc%2Fpasswd/0", {}, 404, "Not Found"),
        ("get", "/pages/..;rm -rf/0", {}, 422, "doc_id"),
        ("get", "/pages/abc/-1", {}, 422, "page_index"),
        ("get", "/pages/0000000000000000/0/overlay", {}, 422, "query.q"),
        ("get", "/figures/0000000000000000/0/0", {}, 404, "no figure"),
        ("get", "/jobs/zzz", {}, 422, "job_id"),
        ("get", "/jobs/abcdef", {}, 404, "no job"),
        ("delete", "/documents/0000000000000000", {}, 404, "no document"),
        ("delete", "/documents/a'b", {}, 422, "doc_id"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client, method, url, kwargs, status, message) -> None:
    r = getattr(client, method)(url, **kwargs)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert message.lower() in json.dumps(detail).lower()
    assert "Traceback" not in r.text


def test_unknown_page_of_a_known_document(client: TestClient) -> None:
    doc_id = client.get("/documents").json()[0]["doc_id"]
    r = client.get(f"/pages/{doc_id}/99/overlay", params={"q": "solar"})
    assert r.status_code == 404 and "no page 99" in r.json()["detail"]


def test_bad_uploads_are_refused_and_leave_nothing(client: TestClient, index_dir: Path) -> None:
    before = client.get("/documents").json()
    r = client.post("/documents", files={"files": ("notes.txt", b"hello", "text/plain")})
    assert r.status_code == 415 and "unsupported file type" in r.json()["detail"]
    r = client.post("/documents", files={"files": ("fake.pdf", b"not a pdf at all", "x")})
    assert r.status_code == 422 and "not a PDF" in r.json()["detail"]
    r = client.post("/documents", files={"files": ("../../evil.pdf", b"%PDF-1.4 broken", "x")})
    assert r.status_code == 202
    job = wait_job(client, r.json()["job_id"])
    assert job["status"] == "done" and job["failed"] and not job["added"]
    assert "not a readable PDF" in job["failed"][0]["reason"]
    assert not (index_dir.parent / "evil.pdf").exists()
    assert not list((index_dir / "_uploads").rglob("*.pdf"))  # failed files are removed
    assert client.get("/documents").json() == before


def test_upload_in_background_while_searches_keep_answering(
    client: TestClient, tmp_path: Path, index_dir: Path
) -> None:
    pdf = make_sample_pdf(tmp_path / "vantorria.pdf", {17: FACT}, n_pages=24)
    assert (
        client.post("/search", json={"query": "Vantorria hydrogen vessels", "k": 1})
        .json()[0]["source"]
        .endswith(("solar_market_outlook_2025.pdf", "harbour_point_water_survey.pdf"))
    )
    r = client.post("/documents", files={"files": ("vantorria.pdf", pdf.read_bytes(), "x")})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    statuses, answered = [], 0
    while True:
        job = client.get(f"/jobs/{job_id}").json()
        statuses.append(job["status"])
        if job["status"] in ("done", "failed"):
            break
        s = client.post("/search", json={"query": CHART_QUESTION, "k": 2})
        assert s.status_code == 200 and s.json()[0]["page_number"] == 2
        answered += 1
    assert "running" in statuses and answered > 0
    assert job["status"] == "done" and job["pages"] == 24 and job["progress"] == 1.0
    doc_id = job["added"][0]["doc_id"]
    hit = client.post(
        "/search", json={"query": "How many hydrogen vessels in the Vantorria fleet?"}
    )
    top = hit.json()[0]
    assert (top["doc_id"], top["page_index"]) == (doc_id, 17)
    # the upload is gone once indexed: the index keeps the file in its sources table, and
    # word boxes come from there
    assert not [p for p in (index_dir / "_uploads").rglob("*") if p.is_file()]
    assert client.get(top["overlay_url"]).status_code == 200
    assert client.get(top["explain_url"]).json()["word_source"] == "layer"

    # the same file again: unchanged, not indexed twice
    again = wait_job(
        client,
        client.post("/documents", files={"files": ("copy.pdf", pdf.read_bytes(), "x")}).json()[
            "job_id"
        ],
    )
    assert again["unchanged"] == [{"file": "copy.pdf", "doc_id": doc_id}] and not again["added"]

    # delete: gone from search and the listing, the stored upload removed
    r = client.delete(f"/documents/{doc_id}")
    assert r.status_code == 202
    assert wait_job(client, r.json()["job_id"])["status"] == "done"
    assert doc_id not in {d["doc_id"] for d in client.get("/documents").json()}
    after = client.post("/search", json={"query": "Vantorria hydrogen vessels", "k": 5}).json()
    assert doc_id not in {p["doc_id"] for p in after}
    assert client.get(f"/pages/{doc_id}/17").status_code == 404


def test_concurrent_searches_during_a_job_all_succeed(client: TestClient, tmp_path: Path) -> None:
    pdf = make_sample_pdf(
        tmp_path / "burst.pdf", {3: "Quintessa orchards grew 812 pears."}, n_pages=12
    )
    job_id = client.post(
        "/documents", files={"files": ("burst.pdf", pdf.read_bytes(), "x")}
    ).json()["job_id"]
    errors: list[str] = []

    def worker() -> None:
        for _ in range(5):
            r = client.post("/search", json={"query": CHART_QUESTION, "k": 3})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    job = wait_job(client, job_id)
    assert job["status"] == "done"
    wait_job(client, client.delete(f"/documents/{job['added'][0]['doc_id']}").json()["job_id"])


def test_bearer_keys_read_and_admin(index_dir: Path, monkeypatch) -> None:
    settings = ServeSettings(index=str(index_dir), read_key="reader", admin_key="boss")
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200  # liveness stays open
        r = c.post("/search", json={"query": "solar"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer nope"}
        assert c.get("/documents", headers=bad).status_code == 401
        read = {"Authorization": "Bearer reader"}
        admin = {"Authorization": "Bearer boss"}
        assert c.post("/search", json={"query": "solar"}, headers=read).status_code == 200
        assert c.get("/documents", headers=admin).status_code == 200  # admin reads too
        doc_id = c.get("/documents", headers=read).json()[0]["doc_id"]
        r = c.delete(f"/documents/{doc_id}", headers=read)
        assert r.status_code == 403 and "admin key" in r.json()["detail"]
        r = c.post("/documents", files={"files": ("a.pdf", b"%PDF-", "x")})
        assert r.status_code == 401
    monkeypatch.setenv("MM_RETRIEVER_READ_KEY", "from-env")
    assert ServeSettings(index="x").read_key == "from-env"


def test_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    from mm_retriever.errors import MMRetrieverError

    with pytest.raises(MMRetrieverError, match="no index at"):
        create_app(ServeSettings(index=str(tmp_path / "none")))
    r = CliRunner().invoke(cli_app, ["serve", "--index", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no index at" in r.output


def test_spooled_uploads_removed_unless_the_index_needs_them(
    tmp_path: Path, minilm_path: str
) -> None:
    """An ``encoded`` index keeps no source files: its uploads stay (word boxes read them);
    leftovers of killed jobs are swept when a server starts, young ones spared."""
    from shared_fixtures import text_index_config

    from mm_retriever.index import MultimodalIndex

    config = text_index_config(minilm_path)
    config.ingest.image_store = "encoded"
    MultimodalIndex.create(tmp_path / "index", config)
    spool = tmp_path / "index" / "_uploads"
    old = spool / "20200101-000000-deadbeef" / "old.pdf"
    young = spool / "20990101-000000-0123abcd" / "new.pdf"
    foreign = spool / "my-notes" / "keep.pdf"  # not a job folder of the server's
    for path in (old, young, foreign):
        path.parent.mkdir(parents=True)
        make_sample_pdf(path, {1: "leftover"}, n_pages=1)
    two_hours_ago = time.time() - 2 * 3600
    for path in (old, foreign):
        os.utime(path, (two_hours_ago, two_hours_ago))
    with TestClient(create_app(ServeSettings(index=str(tmp_path / "index")))) as c:
        assert not old.exists() and not old.parent.exists()  # swept at start
        assert young.exists()  # maybe another server's job in flight: spared
        assert foreign.exists()  # only the server's own job folders are swept
        shutil.rmtree(young.parent)
        shutil.rmtree(foreign.parent)
        pdf = make_sample_pdf(tmp_path / "kept.pdf", {1: "The Orlow dam is 41 m high."}, n_pages=2)
        job = wait_job(
            c,
            c.post("/documents", files={"files": ("kept.pdf", pdf.read_bytes(), "x")}).json()[
                "job_id"
            ],
        )
        assert job["status"] == "done" and job["added"]
        (kept,) = [p for p in spool.rglob("*.pdf")]
        assert kept.name == "kept.pdf"  # the only copy of its text layer: kept
        explained = c.post("/search", json={"query": "How high is the Orlow dam?", "k": 1}).json()
        assert c.get(explained[0]["explain_url"]).json()["word_source"] == "layer"
        wait_job(c, c.delete(f"/documents/{job['added'][0]['doc_id']}").json()["job_id"])
        assert not kept.exists()  # deleting the document removes its upload
