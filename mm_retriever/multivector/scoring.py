"""Exact late-interaction (MaxSim) scoring, batched and vectorised in torch.

``score(q, d) = sum_i max_j <q_i, d_j>`` over a query's token vectors ``q_i`` and a document's
patch vectors ``d_j``. Padded document rows are masked out so they never win the max; padded
query rows contribute nothing. This equals colpali-engine's ``score_multi_vector`` on the same
tensors whenever each query token has a non-negative best similarity (always the case for
real ColPali embeddings): colpali-engine pads with zero rows, which score 0 and so win the max
only when every real similarity of a query token is negative; here the true max is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    MultiVectors = torch.Tensor | Sequence[torch.Tensor | np.ndarray]

# Bytes of float32 similarities one scoring step may hold.
_STEP_BYTES = 256 * 1024 * 1024


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    import torch

    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))


def pad_multivectors(
    items: MultiVectors, mask: torch.Tensor | None = None, *, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(padded [N, T, D], mask [N, T] bool)`` from a list of ``[n_i, D]`` or a padded tensor.

    For a padded tensor without ``mask``, all-zero rows are taken as padding (ColPali models
    zero the padded positions of their outputs).
    """
    import torch

    if isinstance(items, torch.Tensor) or (isinstance(items, np.ndarray) and items.ndim == 3):
        padded = _as_tensor(items)
        if padded.ndim != 3:
            raise ValueError(f"expected a [N, T, D] tensor, got shape {tuple(padded.shape)}")
        if mask is None:
            mask = padded.ne(0).any(dim=-1)
        elif mask.shape != padded.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} != {tuple(padded.shape[:2])}")
        padded = padded if dtype is None else padded.to(dtype)
        return padded, mask.bool().to(padded.device)
    tensors = [_as_tensor(t) for t in items]
    if not tensors:
        raise ValueError("no multivectors given")
    for t in tensors:
        if t.ndim != 2:
            raise ValueError(f"each multivector must be [n, D], got shape {tuple(t.shape)}")
    dims = {t.shape[1] for t in tensors}
    if len(dims) != 1:
        raise ValueError(f"multivectors have different dims: {sorted(dims)}")
    out_dtype = dtype or tensors[0].dtype
    lengths = torch.tensor([t.shape[0] for t in tensors])
    padded = torch.zeros(len(tensors), int(lengths.max()), dims.pop(), dtype=out_dtype)
    for i, t in enumerate(tensors):
        padded[i, : t.shape[0]] = t.to(out_dtype)
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, mask


def _maxsim_block(
    q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor
) -> torch.Tensor:
    """[bq, bd] MaxSim of float32 ``q [bq, Lq, D]`` against float32 ``d [bd, Ld, D]``."""
    import torch

    sim = torch.einsum("qid,njd->qnij", q, d)  # [bq, bd, Lq, Ld]
    sim = sim.masked_fill(~d_mask[None, :, None, :], float("-inf"))
    best = sim.amax(dim=-1)  # [bq, bd, Lq]; -inf where a document has no rows
    best = torch.where(torch.isneginf(best), torch.zeros_like(best), best)
    best = best * q_mask[:, None, :]
    return best.sum(dim=-1)


def maxsim(
    queries: MultiVectors,
    docs: MultiVectors,
    *,
    doc_mask: torch.Tensor | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """MaxSim scores ``[n_queries, n_docs]`` (float32, CPU).

    ``queries`` and ``docs`` are lists of ``[n_i, D]`` tensors/arrays or padded ``[N, T, D]``
    tensors (``doc_mask [N, T]`` marks real document rows; without it all-zero rows are padding).
    Math is float32 on ``device`` (default: where the inputs are); ``batch_size`` queries at a
    time, documents in steps that keep the similarity block within a fixed memory budget.
    """
    import torch

    q, q_mask = pad_multivectors(queries)
    d, d_mask = pad_multivectors(docs, doc_mask)
    if q.shape[-1] != d.shape[-1]:
        raise ValueError(f"query dim {q.shape[-1]} != document dim {d.shape[-1]}")
    dev = torch.device(device) if device is not None else q.device
    n_q, n_d = q.shape[0], d.shape[0]
    scores = torch.empty(n_q, n_d, dtype=torch.float32)
    for i in range(0, n_q, batch_size):
        qb = q[i : i + batch_size].to(dev, torch.float32)
        qm = q_mask[i : i + batch_size].to(dev)
        per_doc = max(1, qb.shape[0] * qb.shape[1] * d.shape[1] * 4)
        step = max(1, min(n_d, _STEP_BYTES // per_doc))
        for j in range(0, n_d, step):
            db = d[j : j + step].to(dev, torch.float32)
            dm = d_mask[j : j + step].to(dev)
            scores[i : i + batch_size, j : j + step] = _maxsim_block(qb, qm, db, dm).cpu()
    return scores


class MultiVectorMatrix:
    """Stored page multivectors as one padded ``[N, T, D]`` matrix plus a ``[N, T]`` mask.

    Built once from a list of ``[n_i, D]`` arrays (storage dtype float16 by default, math in
    float32); ``score`` rates every row (or a subset, for filters) against one query or a
    batch of queries in a single pass over the matrix.
    """

    def __init__(
        self,
        multivectors: Sequence[torch.Tensor | np.ndarray],
        *,
        dtype: torch.dtype | str | None = "float16",
        device: str | torch.device = "cpu",
    ) -> None:
        import torch

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        padded, mask = pad_multivectors(list(multivectors), dtype=dtype)
        self.device = torch.device(device)
        self.vectors = padded.to(self.device)
        self.mask = mask.to(self.device)
        self.lengths = mask.sum(dim=1)

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[2])

    @property
    def nbytes(self) -> int:
        return self.vectors.element_size() * self.vectors.nelement()

    def score(
        self,
        query_vecs: MultiVectors,
        rows: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """MaxSim of the query (or queries) against the rows (all, or ``rows`` in that order).

        One ``[Lq, D]`` query gives ``Tensor[N]``; a list of queries or a padded ``[Q, Lq, D]``
        tensor gives ``Tensor[Q, N]`` (float32, CPU).
        """
        import torch

        single = isinstance(query_vecs, (torch.Tensor, np.ndarray)) and query_vecs.ndim == 2
        q, q_mask = pad_multivectors([query_vecs] if single else query_vecs)
        if q.shape[-1] != self.dim:
            raise ValueError(f"query dim {q.shape[-1]} != stored dim {self.dim}")
        # All queries' real rows side by side: one matmul per block of stored rows.
        flat = q[q_mask].to(self.device, torch.float32)  # [sum Lq, D]
        owner = torch.repeat_interleave(
            torch.arange(q.shape[0], device=self.device), q_mask.sum(dim=1).to(self.device)
        )
        if rows is None:
            index = None
            n = len(self)
        else:
            index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
            n = int(index.numel())
        out = torch.zeros(q.shape[0], n, dtype=torch.float32, device=self.device)
        t = self.vectors.shape[1]
        step = max(1, _STEP_BYTES // max(1, t * (flat.shape[0] + self.dim) * 4))
        for j in range(0, n, step):
            sel = slice(j, min(n, j + step))
            block = self.vectors[sel] if index is None else self.vectors[index[sel]]
            bmask = self.mask[sel] if index is None else self.mask[index[sel]]
            sim = torch.einsum("ntd,kd->nkt", block.float(), flat)  # [b, sum Lq, T]
            sim = sim.masked_fill(~bmask[:, None, :], float("-inf"))
            best = sim.amax(dim=-1)  # [b, sum Lq]
            best = torch.where(torch.isneginf(best), torch.zeros_like(best), best)
            out[:, sel].index_add_(0, owner, best.T)
        out = out.cpu()
        return out[0] if single else out
