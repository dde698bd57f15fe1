"""Where on a page each leg matched a query, and an overlay PNG that shows it.

- text and BM25 legs: boxes of the matched chunks and of the page words that match the query's
  terms (the BM25 leg's own tokenizer: stop words out, stemmed). Word boxes come from the PDF
  text layer (PyMuPDF) when the source file is still where it was indexed from (same content
  hash), and from the page's OCR (the OCR cache the ingest wrote, or OCR of the stored page
  image at request time) where the page was OCR'd or the source is gone;
- figure leg: the bbox of each matched figure crop;
- page leg (ColPali family): per-patch MaxSim similarity maps per query token and combined,
  computed by re-encoding the stored page image (colpali-engine's interpretability helpers),
  on the page's coordinate grid.

``explain_page(index, query, doc_id, page_index)`` returns an ``Explanation`` (JSON-ready with
``to_dict``); ``overlay_png(index, query, doc_id, page_index)`` renders it over the page image.
All boxes are ``(x0, y0, x1, y1)`` in PDF points, origin top-left (see ``mm_retriever.types``).
"""

from __future__ import annotations

import functools
import io
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from mm_retriever.protocols import Query
from mm_retriever.store import FIGURES, PAGES
from mm_retriever.store.filters import PAGE_COLUMNS, where_clause
from mm_retriever.types import BBox, LegHit

if TYPE_CHECKING:
    from mm_retriever.index import MultimodalIndex

log = logging.getLogger(__name__)

BoxKind = Literal["term", "chunk", "figure"]
_WORD = re.compile(r"\w+", re.UNICODE)


class PageNotFoundError(LookupError):
    """No committed page ``(doc_id, page_index)`` in the index."""


@dataclass
class MatchBox:
    """A region of the page that matched: a query term, a chunk, or a figure crop."""

    leg: str
    kind: BoxKind
    bbox: BBox
    weight: float  # 0..1, relative within its kind on this page
    text: str = ""
    score: float | None = None  # the leg's raw score for this part, when it has one

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "kind": self.kind,
            "bbox": [round(float(v), 2) for v in self.bbox],
            "weight": round(float(self.weight), 4),
            "text": self.text,
            "score": self.score,
        }


@dataclass
class SimilarityMap:
    """Page-leg MaxSim similarity per image patch: a grid over the whole page.

    ``combined[r, c]`` and ``per_token[t][r, c]`` are raw dot products; row 0 is the top of the
    page. Patch ``(r, c)`` covers ``(c*w/cols, r*h/rows, (c+1)*w/cols, (r+1)*h/rows)`` points.
    """

    leg: str
    tokens: list[str]
    token_positions: list[int]  # each token's position in the encoded query
    per_token: np.ndarray  # [n_tokens, rows, cols]
    combined: np.ndarray  # [rows, cols]: the best token's similarity per patch

    def normalized(self, token: int | None = None) -> np.ndarray:
        """``combined`` (or query token ``token``'s map) scaled to 0..1 on this page."""
        grid = self.combined if token is None else self.per_token[token]
        lo, hi = float(grid.min()), float(grid.max())
        return (grid - lo) / (hi - lo) if hi > lo else np.zeros_like(grid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg": self.leg,
            "grid": list(self.combined.shape),
            "tokens": self.tokens,
            "token_positions": self.token_positions,
            "combined": np.round(self.combined, 4).tolist(),
            "per_token": np.round(self.per_token, 4).tolist(),
        }


@dataclass
class Explanation:
    """Where one page matched one query, per leg."""

    doc_id: str
    page_index: int
    query: str
    width: float  # points
    height: float
    leg_scores: dict[str, float] = field(default_factory=dict)  # legs that matched the page
    boxes: list[MatchBox] = field(default_factory=list)
    similarity: SimilarityMap | None = None
    word_source: str = "none"  # "layer", "ocr", "layer+ocr" or "none"
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "page_index": self.page_index,
            "query": self.query,
            "width": self.width,
            "height": self.height,
            "leg_scores": self.leg_scores,
            "word_source": self.word_source,
            "boxes": [b.to_dict() for b in self.boxes],
            "similarity": self.similarity.to_dict() if self.similarity else None,
            "notes": self.notes,
        }


@dataclass
class Word:
    text: str
    bbox: BBox
    line: tuple[Any, ...]  # words of one text block (PDF) or OCR line share this key


# ------------------------------------------------------------------ public API


def explain_page(
    index: MultimodalIndex,
    query: str | Query,
    doc_id: str,
    page_index: int,
    *,
    legs: Sequence[str] | None = None,
    similarity: bool = True,
    clean_query: bool = True,
    expand_query: bool = True,
) -> Explanation:
    """Where each leg of ``index`` matched ``query`` on page ``(doc_id, page_index)``.

    ``legs``: the legs to explain (default all). ``similarity``: compute the page leg's
    similarity maps (one page encode, the costly part). ``clean_query``: drop answer-format
    instructions first, and ``expand_query``: append financial metrics' line items, as searches
    do (``HybridRetriever(clean_query=..., expand_query=...)``).
    """
    from mm_retriever.ranking.hybrid import HybridRetriever

    row = _page_row(index, doc_id, page_index)
    names = list(legs) if legs else list(index.legs)
    retriever = HybridRetriever(
        index,
        legs=names,
        include_images=False,
        write_images=False,
        clean_query=clean_query,
        expand_query=expand_query,
    )
    q = retriever.prepare(Query.of(query))  # the query text the legs see
    filters = {"doc_id": doc_id, "page_index": int(page_index)}
    found = retriever.leg_hits(q, 1, filters)
    hits = {n: leg_hits[0] for n, leg_hits in found.items() if leg_hits}
    out = Explanation(
        doc_id=doc_id,
        page_index=page_index,
        query=q.text,
        width=float(row["width"]),
        height=float(row["height"]),
        leg_scores={n: h.score for n, h in hits.items()},
    )
    text_legs = [n for n in names if getattr(index.legs[n], "matched_kind", None) == "chunk"]
    if q.text and text_legs:
        words, out.word_source = page_words(index, doc_id, page_index, row)
        if not words and row.get("text"):
            out.notes.append("no word boxes: the source file is gone and the page has no OCR")
        out.boxes += _term_boxes(index, q.text, words, text_legs)
        for name in text_legs:
            if name in hits:
                out.boxes += _chunk_boxes(index, name, hits[name], words)
    for name in names:
        leg = index.legs[name]
        if getattr(leg, "matched_kind", None) == "figure" and name in hits:
            out.boxes += _figure_boxes(index, name, hits[name])
        if similarity and getattr(leg, "kind", "") == "page" and q.text:
            try:
                out.similarity = page_similarity(leg, name, q.text, _image(index, row))
            except Exception as exc:  # a model whose processor lacks the helpers: say so
                out.notes.append(f"no similarity map for leg '{name}': {exc}")
    return out


def overlay_png(
    index: MultimodalIndex,
    query: str | Query,
    doc_id: str,
    page_index: int,
    *,
    legs: Sequence[str] | None = None,
    max_width: int | None = None,
    token: int | None = None,
) -> bytes:
    """The page image with the heat map and match boxes drawn over it, as PNG bytes.

    ``token``: show the page leg's map of that query token (an index into
    ``SimilarityMap.tokens``) instead of the combined map.
    """
    explanation = explain_page(index, query, doc_id, page_index, legs=legs)
    image = _image(index, _page_row(index, doc_id, page_index))
    return encode_png(render_overlay(image, explanation, token=token), max_width)


def render_overlay(
    image: Image.Image, explanation: Explanation, *, token: int | None = None
) -> Image.Image:
    """Draw ``explanation`` over the page ``image`` (any resolution of the same page)."""
    base = image.convert("RGBA")
    sx = base.width / max(explanation.width, 1e-6)
    sy = base.height / max(explanation.height, 1e-6)
    sim = explanation.similarity
    if sim is not None:
        if token is not None and not 0 <= token < len(sim.tokens):
            raise ValueError(f"token {token} out of range: the query has {len(sim.tokens)}")
        base = Image.alpha_composite(base, _heat_layer(sim, base.size, token))
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    order = {"chunk": 0, "figure": 1, "term": 2}
    for box in sorted(explanation.boxes, key=lambda b: order[b.kind]):
        x0, y0, x1, y1 = box.bbox
        rect = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        w = max(0.25, min(1.0, box.weight))
        if box.kind == "term":  # a highlighter stroke
            draw.rectangle(_pad(rect, 1), fill=(255, 214, 0, int(90 + 80 * w)))
        elif box.kind == "chunk":
            draw.rectangle(_pad(rect, 3), fill=(37, 99, 235, int(18 + 30 * w)))
            draw.rectangle(_pad(rect, 3), outline=(37, 99, 235, 170), width=1)
        else:  # figure crop
            draw.rectangle(_pad(rect, 2), outline=(219, 39, 119, 230), width=4)
    return Image.alpha_composite(base, layer).convert("RGB")


def encode_png(image: Image.Image, max_width: int | None = None) -> bytes:
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# ------------------------------------------------------------------ page data


def _page_row(index: MultimodalIndex, doc_id: str, page_index: int) -> dict[str, Any]:
    where = where_clause({"doc_id": doc_id, "page_index": int(page_index)}, PAGE_COLUMNS)
    columns = ["doc_id", "page_index", "width", "height", "text", "text_source", "image"]
    rows = index.store.query(PAGES, where, columns).to_pylist()
    if not rows or not index.store.has_document(doc_id):
        raise PageNotFoundError(f"no page {page_index} of document '{doc_id}' in this index")
    return rows[0]


def _image(index: MultimodalIndex, row: dict[str, Any]) -> Image.Image:
    """The page image as users get it: stored bytes, or rendered from the kept source file."""
    if not row.get("image"):
        found = index.page_images.render_encoded(row["doc_id"], row["page_index"])
        row["image"] = found[0] if found is not None else None
    if not row.get("image"):
        raise PageNotFoundError(f"page {row['page_index']} of '{row['doc_id']}' has no image")
    return Image.open(io.BytesIO(row["image"])).convert("RGB")


# ------------------------------------------------------------------ words


def page_words(
    index: MultimodalIndex, doc_id: str, page_index: int, row: dict[str, Any] | None = None
) -> tuple[list[Word], str]:
    """The page's words with boxes (points) and where they came from."""
    row = row or _page_row(index, doc_id, page_index)
    words: list[Word] = []
    sources = []
    source = _document_source(index, doc_id)
    layer = _layer_words(source, doc_id, page_index) if source else None
    if layer:
        words += layer
        sources.append("layer")
    text_source = str(row.get("text_source") or "")
    if "ocr" in text_source or layer is None:
        ocr = _ocr_words(index, doc_id, page_index, row, run=layer is None)
        if ocr:
            words += ocr
            sources.append("ocr")
    return words, "+".join(sources) or "none"


def _document_source(index: MultimodalIndex, doc_id: str) -> str | None:
    for doc in index.documents():
        if doc["doc_id"] == doc_id:
            return doc["source"]
    return None


@functools.lru_cache(maxsize=256)
def _file_id(path: str, mtime_ns: int, size: int) -> str:
    from mm_retriever.ingest import document_id

    return document_id(path)


def _same_file(path: Path, doc_id: str) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return path.is_file() and _file_id(str(path), st.st_mtime_ns, st.st_size) == doc_id


def _layer_words(source: str, doc_id: str, page_index: int) -> list[Word] | None:
    """PyMuPDF word boxes of the source PDF's page; None when the file is gone or changed."""
    path = Path(source)
    if path.suffix.lower() != ".pdf" or not _same_file(path, doc_id):
        return None
    import pymupdf

    with pymupdf.open(path) as doc:
        if not 0 <= page_index < doc.page_count:
            return None
        raw = doc.load_page(page_index).get_text("words", sort=True)
    return [Word(w[4], (w[0], w[1], w[2], w[3]), ("L", w[5])) for w in raw]


def _ocr_words(
    index: MultimodalIndex, doc_id: str, page_index: int, row: dict[str, Any], run: bool
) -> list[Word]:
    """Words of the page's OCR lines: from the ingest's OCR cache, else (``run``) OCR now."""
    from mm_retriever.ingest.ocr import engine_cache_path, get_ocr_engine, load_cached, ocr_page

    cfg = index.config.ingest
    try:  # the ingest's engine, and the same reading the stored page image at its own dpi
        ingest_engine = get_ocr_engine(
            cfg.ocr_engine, cfg.ocr_dpi, cfg.ocr_max_side, cfg.ocr_runtime
        )
        engine = get_ocr_engine(cfg.ocr_engine, cfg.dpi, cfg.ocr_max_side, cfg.ocr_runtime)
    except Exception as exc:
        log.warning("no OCR word boxes for %s p.%d: %s", doc_id, page_index + 1, exc)
        return []
    ocr = None
    page_file = engine_cache_path(ingest_engine, doc_id, page_index)
    candidates = [  # the ingest's page OCR, its figure-region OCR, then an earlier explain's
        page_file,
        *sorted(page_file.parent.glob(f"{page_index:05d}-r*.json")),
        engine_cache_path(engine, doc_id, page_index),
    ]
    for path in candidates:
        ocr = load_cached(path)
        if ocr is not None:
            break
    has_image = row.get("image") or index.page_images.has_source(doc_id)
    if ocr is None and run and row.get("text") and has_image:
        try:  # OCR the stored page image at its own resolution (cached like the ingest's)
            image = _image(index, row)
            ocr, _ = ocr_page(
                engine, lambda: (image, float(row["width"]) / image.width), doc_id, page_index
            )
        except Exception as exc:
            log.warning("no OCR word boxes for %s p.%d: %s", doc_id, page_index + 1, exc)
            return []
    if ocr is None:
        return []
    return [w for i, line in enumerate(ocr.lines) for w in _split_line(line.text, line.bbox, i)]


def _split_line(text: str, bbox: BBox, line_no: int) -> list[Word]:
    """Word boxes of an OCR line, spread over its box in proportion to character offsets."""
    x0, y0, x1, y1 = bbox
    n = max(len(text), 1)
    step = (x1 - x0) / n
    return [
        Word(m.group(), (x0 + m.start() * step, y0, x0 + m.end() * step, y1), ("O", line_no))
        for m in re.finditer(r"\S+", text)
    ]


# ------------------------------------------------------------------ boxes


def _norm(text: str) -> list[str]:
    return [t.lower() for t in _WORD.findall(text)]


def _term_boxes(
    index: MultimodalIndex, query: str, words: Sequence[Word], text_legs: Sequence[str]
) -> list[MatchBox]:
    """Boxes of the page words that match a query term (BM25's tokenizer when there is one)."""
    if not words:
        return []
    bm25 = next((n for n in text_legs if getattr(index.legs[n], "kind", "") == "bm25"), None)
    if bm25 is not None:
        tokenize = index.legs[bm25].tokenize  # type: ignore[attr-defined]
        terms = set(tokenize([query])[0])
        word_terms = tokenize([w.text for w in words])
        leg = bm25
    else:
        terms = {t for t in _norm(query) if len(t) > 2}
        word_terms = [_norm(w.text) for w in words]
        leg = text_legs[0]
    if not terms:
        return []
    # rarer terms on the page weigh more (a cheap, page-local IDF)
    counts: dict[str, int] = {}
    for toks in word_terms:
        for t in set(toks) & terms:
            counts[t] = counts.get(t, 0) + 1
    out = []
    for word, toks in zip(words, word_terms, strict=True):
        hit = [t for t in toks if t in terms]
        if hit:
            weight = max(1.0 / counts[t] for t in hit) ** 0.5
            out.append(MatchBox(leg, "term", word.bbox, weight, word.text))
    return out


def _part_scores(hit: LegHit) -> dict[int, float]:
    """Score of each matched part (chunk or figure); the page score where the leg gave none."""
    scores = hit.matched_scores or [hit.score] * len(hit.matched)
    return dict(zip(hit.matched, scores, strict=False))


def _chunk_texts(index: MultimodalIndex, leg: str, hit: LegHit) -> dict[int, str]:
    table = index.legs[leg].table  # type: ignore[attr-defined]
    where = where_clause(
        {"doc_id": hit.doc_id, "page_index": hit.page_index, "chunk_index": hit.matched},
        {**PAGE_COLUMNS, "chunk_index": int},
    )
    rows = index.store.query(table, where, ["chunk_index", "text"]).to_pylist()
    return {r["chunk_index"]: r["text"] for r in rows}


def _chunk_boxes(
    index: MultimodalIndex, leg: str, hit: LegHit, words: Sequence[Word], top: int = 2
) -> list[MatchBox]:
    """Line boxes of the leg's best matched chunks, located among the page words."""
    matched = [c for c in hit.matched if c >= 0][:top]
    if not matched or not words:
        return []
    scores = _part_scores(hit)
    best = max(scores[c] for c in matched)
    texts = _chunk_texts(index, leg, LegHit(hit.doc_id, hit.page_index, hit.score, 0, matched))
    word_tokens = [" ".join(_norm(w.text)) for w in words]
    out = []
    for c in matched:
        span = locate(_norm(texts.get(c, "")), word_tokens)
        if span is None:
            continue
        weight = scores[c] / best if best > 0 else 1.0
        for bbox in line_boxes(words[span[0] : span[1]]):
            out.append(MatchBox(leg, "chunk", bbox, weight, texts[c][:200], float(scores[c])))
    return out


def locate(chunk_tokens: Sequence[str], word_tokens: Sequence[str]) -> tuple[int, int] | None:
    """The window of page words (start, stop) that best covers a chunk's tokens.

    A window as long as the chunk slides over the words; the one holding most chunk tokens
    wins (None if under a third of them are found), then it is trimmed to matching ends.
    """
    if not chunk_tokens or not word_tokens:
        return None
    vocab = set(chunk_tokens)
    hit = np.array([bool(t) and set(t.split()) <= vocab for t in word_tokens], dtype=np.int32)
    n = min(len(chunk_tokens), len(word_tokens))
    sums = np.convolve(hit, np.ones(n, dtype=np.int32), mode="valid")
    start = int(np.argmax(sums))
    if sums[start] < max(1, n // 3):
        return None
    inside = np.flatnonzero(hit[start : start + n])
    return start + int(inside[0]), start + int(inside[-1]) + 1


def line_boxes(words: Sequence[Word]) -> list[BBox]:
    """One box per text block (PDF) or line (OCR) of ``words``, in reading order."""
    lines: OrderedDict[tuple[Any, ...], list[float]] = OrderedDict()
    for w in words:
        b = lines.get(w.line)
        if b is None:
            lines[w.line] = list(w.bbox)
        else:
            b[0], b[1] = min(b[0], w.bbox[0]), min(b[1], w.bbox[1])
            b[2], b[3] = max(b[2], w.bbox[2]), max(b[3], w.bbox[3])
    return [tuple(b) for b in lines.values()]  # type: ignore[misc]


def _figure_boxes(index: MultimodalIndex, leg: str, hit: LegHit) -> list[MatchBox]:
    if not hit.matched:
        return []
    scores = _part_scores(hit)
    where = where_clause(
        {"doc_id": hit.doc_id, "page_index": hit.page_index, "figure_index": hit.matched},
        {**PAGE_COLUMNS, "figure_index": int},
    )
    rows = index.store.query(FIGURES, where, ["figure_index", "bbox", "caption"]).to_pylist()
    best = max(scores.values())
    return [
        MatchBox(
            leg,
            "figure",
            tuple(float(v) for v in r["bbox"]),  # type: ignore[arg-type]
            scores[r["figure_index"]] / best if best > 0 else 1.0,
            r["caption"] or f"figure {r['figure_index'] + 1}",
            float(scores[r["figure_index"]]),
        )
        for r in sorted(rows, key=lambda r: -scores[r["figure_index"]])
    ]


# ------------------------------------------------------------------ page leg

_encode_lock = threading.Lock()


def page_similarity(leg: Any, name: str, query: str, image: Image.Image) -> SimilarityMap:
    """MaxSim similarity maps of ``query`` over ``image`` for a ColPali-family page leg.

    The page image is re-encoded with the leg's model (the stored vectors carry no patch grid
    for every model family), then colpali-engine's ``get_similarity_maps_from_embeddings``
    gives one map per query token; special and padding tokens are dropped.
    """
    import torch
    from colpali_engine.interpretability.similarity_map_utils import (
        get_similarity_maps_from_embeddings,
    )

    encoder = leg.encoder
    model, processor = encoder._model, encoder._processor  # the encoder's loaded pair
    with _encode_lock, torch.inference_mode():
        batch_images = processor.process_images([image.convert("RGB")]).to(encoder.device)
        batch_queries = processor.process_queries([query]).to(encoder.device)
        image_emb = model(**batch_images).float()
        query_emb = model(**batch_queries).float()
    n_patches = _n_patches(processor, model, image, batch_images)
    image_mask = processor.get_image_mask(batch_images).cpu()
    maps = get_similarity_maps_from_embeddings(
        image_embeddings=image_emb.cpu(),
        query_embeddings=query_emb.cpu(),
        n_patches=n_patches,
        image_mask=image_mask,
    )[0]  # [n_query_tokens, n_patches_x, n_patches_y]
    ids = batch_queries["input_ids"][0].tolist()
    mask = batch_queries["attention_mask"][0].bool().tolist()
    tokenizer = getattr(processor, "tokenizer", processor)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    keep = [i for i, (tid, m) in enumerate(zip(ids, mask, strict=True)) if m and tid not in special]
    keep = [i for i in keep if tokens[i].strip("▁ Ġ#") and i < maps.shape[0]] or list(
        range(maps.shape[0])
    )
    per_token = maps[keep].permute(0, 2, 1).numpy()  # -> [tokens, rows (y), cols (x)]
    return SimilarityMap(
        leg=name,
        tokens=[tokens[i] for i in keep],
        token_positions=keep,
        per_token=per_token,
        combined=per_token.max(axis=0),
    )


def _n_patches(processor: Any, model: Any, image: Image.Image, batch: Any) -> tuple[int, int]:
    """(n_patches_x, n_patches_y) of the processed image, across processor signatures."""
    attempts = (
        lambda: processor.get_n_patches(image.size, patch_size=model.patch_size),
        lambda: processor.get_n_patches(image.size, spatial_merge_size=model.spatial_merge_size),
        lambda: processor.get_n_patches(image.size),
    )
    for attempt in attempts:
        try:
            nx, ny = attempt()
            return int(nx), int(ny)
        except (AttributeError, TypeError):
            continue
    n = int(processor.get_image_mask(batch)[0].sum())
    side = round(n**0.5)
    if side * side != n:
        raise ValueError(f"cannot infer the patch grid of {n} image tokens")
    return side, side


def _heat_layer(sim: SimilarityMap, size: tuple[int, int], token: int | None) -> Image.Image:
    """A translucent heat map of the similarity, upscaled to ``size``."""
    from matplotlib import colormaps

    values = sim.normalized(token)
    small = Image.fromarray((values * 255).astype("uint8"), mode="L")
    grey = np.asarray(small.resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    rgba = colormaps["inferno"](grey)
    rgba[..., 3] = 0.15 + 0.45 * grey
    return Image.fromarray((rgba * 255).astype("uint8"), mode="RGBA")


def _pad(rect: tuple[float, float, float, float], p: float) -> tuple[float, ...]:
    return (rect[0] - p, rect[1] - p, rect[2] + p, rect[3] + p)
