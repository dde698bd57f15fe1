"""Kernel table of issue #12: exact MaxSim pages/s against this machine's roofline, one run.

Measures, interleaved in rounds on the same data (so a shared/loaded box slows every side alike):
memory read bandwidth (torch sum and copy over the page buffer itself), bf16 and fp32 GEMM rates,
and pages/s of ours (``multivector.maxsim``), colpali-engine's ``score_multi_vector`` and plain
torch (bf16 matmul + max), for one query and for a batch of queries. Pages are synthetic:
L2-normalised random vectors, ``--page-vectors`` x ``--dim`` (ColPali: 1,030 x 128), stored flat;
the buffer is larger than the L3 cache so pages stream from memory.

    uv run --frozen python benchmarks/late_interaction/kernel.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from mm_retriever.multivector import maxsim_native
from mm_retriever.multivector.maxsim import maxsim_flat, maxsim_flat_batch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def machine_info() -> dict:
    """CPU model, cores, relevant flags, caches, library versions, load average."""
    info: dict = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(
            ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")
        )
        info["cpu_model"] = model
    except (OSError, StopIteration):
        info["cpu_model"] = platform.processor()
    info["cores"] = os.cpu_count()
    flags = maxsim_native.cpu_flags()
    wanted = (
        "avx2",
        "avx512f",
        "avx512_bf16",
        "avx512_fp16",
        "avx512_vnni",
        "amx_tile",
        "amx_bf16",
    )
    info["cpu_flags"] = [f for f in (*wanted, "amx_int8", "amx_fp16") if f in flags]
    for name in ("L2", "L3"):
        try:
            idx = {"L2": 2, "L3": 3}[name]
            path = Path(f"/sys/devices/system/cpu/cpu0/cache/index{idx}/size")
            info[f"{name.lower()}_cache"] = path.read_text().strip()
        except OSError:
            pass
    info["torch"] = torch.__version__
    info["colpali_engine"] = importlib.metadata.version("colpali-engine")
    info["numpy"] = np.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["mkldnn"] = torch.backends.mkldnn.is_available()
    info["maxsim_amx_kernel"] = maxsim_native.load() is not None
    if not info["maxsim_amx_kernel"]:
        info["maxsim_amx_unavailable"] = maxsim_native.unavailable_reason()
    info["loadavg_start"] = os.getloadavg()
    return info


def make_pages(n_pages: int, n_vec: int, dim: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Flat [n_pages * n_vec, dim] unit vectors, generated in chunks to bound RAM."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.empty(n_pages * n_vec, dim, dtype=dtype)
    step = 1 << 18
    for i in range(0, values.shape[0], step):
        x = torch.randn(min(step, values.shape[0] - i), dim, generator=gen)
        values[i : i + step] = torch.nn.functional.normalize(x, dim=1).to(dtype)
    return values


def make_query(n_tok: int, dim: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n_tok, dim, generator=gen), dim=1).to(dtype)


def plain_torch(queries: list[torch.Tensor], values: torch.Tensor, n_vec: int, block: int = 64):
    """The obvious torch version: bf16/fp16 matmul per block of equal-length pages + max + sum."""
    q = torch.cat(queries)
    n_pages = values.shape[0] // n_vec
    out = torch.empty(len(queries), n_pages)
    split = [x.shape[0] for x in queries]
    for i in range(0, n_pages, block):
        blk = values[i * n_vec : min(n_pages, i + block) * n_vec]
        sims = (q @ blk.T).view(q.shape[0], -1, n_vec).amax(dim=2).float()  # [Qt, nb]
        out[:, i : i + block] = torch.stack([s.sum(0) for s in sims.split(split)])
    return out


def colpali_engine(queries: list[torch.Tensor], values: torch.Tensor, n_vec: int, n_pages: int):
    from colpali_engine.models import ColPaliProcessor

    pages = list(values[: n_pages * n_vec].view(n_pages, n_vec, -1).unbind(0))
    return ColPaliProcessor.score_multi_vector(queries, pages, device="cpu")


def in_threads(pieces: list[Callable[[], object]], threads: int) -> None:
    """Run ``pieces`` on ``threads`` Python threads, torch single-threaded in each (dynamic
    scheduling: a core taken by another process slows one thread, not a whole parallel region)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda fn: fn(), pieces))
    finally:
        torch.set_num_threads(saved)


class Rounds:
    """Per-name timings collected over interleaved rounds; reports best and median rates."""

    def __init__(self) -> None:
        self.times: dict[str, list[float]] = {}

    def time(self, name: str, fn: Callable[[], object]) -> None:
        if name not in self.times:
            fn()  # warm-up (first-call packing, kernel build, page faults) is not timed
        start = time.perf_counter()
        fn()
        self.times.setdefault(name, []).append(time.perf_counter() - start)

    def rate(self, name: str, work: float, how: str = "best") -> float:
        t = min(self.times[name]) if how == "best" else statistics.median(self.times[name])
        return work / t


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype]
    n, nv, dim, qt = args.pages, args.page_vectors, args.dim, args.query_tokens
    page_bytes = nv * dim * torch.tensor([], dtype=dtype).element_size()
    flops_page = 2 * qt * nv * dim
    machine = machine_info()
    print(f"machine: {machine['cpu_model']}, {machine['cores']} cores, torch {torch.__version__}")

    values = make_pages(n, nv, dim, dtype, seed=0)
    offsets = torch.arange(n + 1, dtype=torch.int64) * nv
    query = make_query(qt, dim, dtype, seed=1)
    batch = [make_query(qt, dim, dtype, seed=2 + i) for i in range(args.batch)]
    total_bytes = values.numel() * values.element_size()
    print(f"{n} pages of {nv} x {dim} {args.dtype} ({total_bytes / 1e9:.2f} GB)")

    # Exactness on the colpali-engine subset (same tensors, same query dtype).
    ref = colpali_engine([query], values, nv, args.colpali_pages)[0]
    ours = maxsim_flat(query, values, offsets, rows=torch.arange(args.colpali_pages))
    exact = maxsim_flat(
        query, values, offsets, rows=torch.arange(args.colpali_pages), backend="torch"
    )
    diff = (ours - ref).abs()
    check = {
        "pages_compared": args.colpali_pages,
        "max_abs_diff_vs_colpali_engine": float(diff.max()),
        "max_rel_diff_vs_colpali_engine": float((diff / ref.abs().clamp(min=1e-6)).max()),
        "max_abs_diff_vs_float32_torch": float((ours - exact).abs().max()),
        "max_abs_diff_colpali_engine_vs_float32_torch": float((ref - exact).abs().max()),
        "equal_within_tolerance": bool(torch.allclose(ours, ref, rtol=1e-2, atol=1e-2)),
    }
    print(check)

    flat32 = values.view(-1).view(torch.uint8)[: (values.numel() * values.element_size()) // 4 * 4]
    flat32 = flat32.view(torch.float32)
    copy_dst = torch.empty_like(values)
    # The same pages stored as float16 and as int8 codes (one scale for all pages).
    values_fp16 = values.to(torch.float16)
    codes = torch.empty(values.shape, dtype=torch.int8)
    for i in range(0, values.shape[0], 1 << 18):
        codes[i : i + (1 << 18)] = (values[i : i + (1 << 18)].float() * 127).round().to(torch.int8)
    fallback = (query, values, offsets, torch.arange(args.fallback_pages))
    gemm = {
        dtype: (torch.randn(n_mat, n_mat).to(dtype), torch.randn(n_mat, n_mat).to(dtype))
        for dtype, n_mat in ((torch.bfloat16, args.gemm_n), (torch.float32, args.gemm_n // 2))
    }
    # colpali-engine also on float32 copies (its fastest input type on some CPUs)
    values32, query32 = values[: args.colpali_pages * nv].float(), query.float()
    sum_pieces = [lambda c=c: c.sum() for c in flat32.chunk(64)]
    rounds = Rounds()
    cp = args.colpali_pages
    cpb = args.colpali_batch_pages
    for r in range(args.rounds):
        for dtype, (a, b) in gemm.items():
            rounds.time(f"gemm_{dtype}", lambda a=a, b=b: a @ b)
            row_blocks = [lambda x=x, b=b: x @ b for x in a.chunk(2 * args.threads)]
            rounds.time(f"gemm_{dtype}_threads", lambda p=row_blocks: in_threads(p, args.threads))
        rounds.time("read_sum", lambda: flat32.sum())
        rounds.time("read_sum_threads", lambda: in_threads(sum_pieces, args.threads))
        rounds.time("read_copy", lambda: copy_dst.copy_(values))
        rounds.time("ours", lambda: maxsim_flat(query, values, offsets))
        rounds.time("plain_torch", lambda: plain_torch([query], values, nv))
        rounds.time("colpali_engine", lambda: colpali_engine([query], values, nv, cp))
        rounds.time("colpali_engine_float32", lambda: colpali_engine([query32], values32, nv, cp))
        rounds.time("ours_float16", lambda: maxsim_flat(query, values_fp16, offsets))
        rounds.time("ours_int8", lambda: maxsim_flat(query, codes, offsets, page_scale=1 / 127))
        rounds.time("ours_batch", lambda: maxsim_flat_batch(batch, values, offsets))
        rounds.time("plain_torch_batch", lambda: plain_torch(batch, values, nv))
        rounds.time("colpali_engine_batch", lambda: colpali_engine(batch, values, nv, cpb))
        if r == 0 or not args.quick:
            rounds.time("ours_torch_fallback", lambda: maxsim_flat(*fallback, backend="torch"))
            if maxsim_native.load_generic() is not None:
                rounds.time("ours_cpu_kernel", lambda: maxsim_flat(*fallback, backend="cpu"))
        print(
            f"round {r + 1}/{args.rounds}: ours {rounds.rate('ours', n):,.0f} pages/s", flush=True
        )
    # Bounds: the best of torch's own parallel op and the same work on threads (see in_threads).
    bf16_tflops = max(
        rounds.rate(f"gemm_{torch.bfloat16}{how}", 2 * args.gemm_n**3) / 1e12
        for how in ("", "_threads")
    )
    fp32_tflops = max(
        rounds.rate(f"gemm_{torch.float32}{how}", 2 * (args.gemm_n // 2) ** 3) / 1e12
        for how in ("", "_threads")
    )
    machine["loadavg_end"] = os.getloadavg()

    # the read bound: the fastest full read (sum, parallel or threaded) or read + write (copy)
    read_times = rounds.times["read_sum"] + rounds.times["read_sum_threads"]
    read_gbs = total_bytes / min(read_times + rounds.times["read_copy"]) / 1e9
    bw_bound = read_gbs * 1e9 / page_bytes
    gemm_bound = bf16_tflops * 1e12 / flops_page
    roofline = min(bw_bound, gemm_bound)
    ours_rate = rounds.rate("ours", n)
    # The same fraction within each round (ours and the bounds measured seconds apart): steadier
    # than best-against-best when the box's load changes from round to round.
    per_round = []
    for i in range(args.rounds):
        read_s = min(
            rounds.times[name][i] for name in ("read_sum", "read_sum_threads", "read_copy")
        )
        gemm_s = min(rounds.times[f"gemm_{torch.bfloat16}{h}"][i] for h in ("", "_threads"))
        bound_i = min(total_bytes / read_s / page_bytes, 2 * args.gemm_n**3 / gemm_s / flops_page)
        per_round.append(n / rounds.times["ours"][i] / bound_i)
    colpali_rate = rounds.rate("colpali_engine", cp)
    nb = args.batch
    batch_flops_page = flops_page * nb
    ours_b = rounds.rate("ours_batch", n)  # pages/s, each page scored for the whole batch
    kernel = {
        "ours_pages_per_s": ours_rate,
        # the path MaxSim(...).search takes here: AMX kernel, else the generic compiled kernel
        "ours_backend": "amx"
        if machine["maxsim_amx_kernel"]
        else ("cpu" if maxsim_native.load_generic() is not None else "torch"),
        "colpali_engine_pages_per_s": colpali_rate,
        "colpali_engine_float32_pages_per_s": rounds.rate("colpali_engine_float32", cp),
        "speedup_vs_colpali_engine_float32": ours_rate / rounds.rate("colpali_engine_float32", cp),
        "plain_torch_pages_per_s": rounds.rate("plain_torch", n),
        "ours_torch_fallback_pages_per_s": rounds.rate("ours_torch_fallback", args.fallback_pages),
        "ours_cpu_kernel_pages_per_s": rounds.rate("ours_cpu_kernel", args.fallback_pages)
        if "ours_cpu_kernel" in rounds.times
        else None,
        "bandwidth_bound_pages_per_s": bw_bound,
        "gemm_bound_pages_per_s": gemm_bound,
        "gemm_bound_fp32_pages_per_s": fp32_tflops * 1e12 / flops_page,
        "roofline_pages_per_s": roofline,
        "bound": "bandwidth" if bw_bound <= gemm_bound else "gemm",
        "fraction_of_roofline": ours_rate / roofline,
        "fraction_of_roofline_per_round": per_round,
        "fraction_of_roofline_median_of_rounds": statistics.median(per_round),
        "speedup_vs_colpali_engine": ours_rate / colpali_rate,
        "speedup_vs_plain_torch": ours_rate / rounds.rate("plain_torch", n),
        "read_bandwidth_gb_per_s": read_gbs,
        "read_bandwidth_sum_gb_per_s": total_bytes / min(rounds.times["read_sum"]) / 1e9,
        "read_bandwidth_sum_threads_gb_per_s": total_bytes
        / min(rounds.times["read_sum_threads"])
        / 1e9,
        "read_bandwidth_copy_gb_per_s": total_bytes / min(rounds.times["read_copy"]) / 1e9,
        "bf16_gemm_tflops": bf16_tflops,
        "fp32_gemm_tflops": fp32_tflops,
        "ours_achieved_gb_per_s": ours_rate * page_bytes / 1e9,
        "median": {
            "ours_pages_per_s": rounds.rate("ours", n, "median"),
            "colpali_engine_pages_per_s": rounds.rate("colpali_engine", cp, "median"),
            "plain_torch_pages_per_s": rounds.rate("plain_torch", n, "median"),
            "read_bandwidth_sum_gb_per_s": total_bytes
            / statistics.median(rounds.times["read_sum"])
            / 1e9,
        },
        "batch": {
            "queries": nb,
            "ours_pages_per_s": ours_b,
            "ours_query_pages_per_s": ours_b * nb,
            "colpali_engine_query_pages_per_s": rounds.rate("colpali_engine_batch", cpb) * nb,
            "plain_torch_query_pages_per_s": rounds.rate("plain_torch_batch", n) * nb,
            "gemm_bound_query_pages_per_s": bf16_tflops * 1e12 / flops_page,
            "ours_achieved_tflops": ours_b * batch_flops_page / 1e12,
            "fraction_of_bf16_gemm_roofline": ours_b * batch_flops_page / (bf16_tflops * 1e12),
            "fraction_of_roofline": ours_b / min(bw_bound, bf16_tflops * 1e12 / batch_flops_page),
            "speedup_vs_colpali_engine": ours_b
            * nb
            / (rounds.rate("colpali_engine_batch", cpb) * nb),
        },
        "exactness": check,
        "variants": {
            name: {
                "page_bytes": nv * dim * size,
                "ours_pages_per_s": rounds.rate(f"ours_{name}", n),
                "bandwidth_bound_pages_per_s": read_gbs * 1e9 / (nv * dim * size),
                "fraction_of_roofline": rounds.rate(f"ours_{name}", n)
                / min(read_gbs * 1e9 / (nv * dim * size), gemm_bound),
            }
            for name, size in (("float16", 2), ("int8", 1))
        },
    }
    setup = {
        "pages": n,
        "page_vectors": nv,
        "dim": dim,
        "dtype": args.dtype,
        "page_bytes": page_bytes,
        "query_tokens": qt,
        "query_dtype": args.dtype,
        "batch_queries": nb,
        "threads": args.threads,
        "rounds": args.rounds,
        "colpali_engine_pages": cp,
        "colpali_engine_batch_pages": cpb,
        "rates": "best of the rounds (median under 'median'); all sides interleaved per round",
        "data": "synthetic L2-normalised Gaussian vectors (speed does not depend on values)",
    }
    # setup and machine also inside "kernel": run.sh merges only that object into its file
    kernel["setup"] = setup
    kernel["machine"] = {k: machine[k] for k in ("cpu_model", "cores", "cpu_flags", "torch")}
    kernel["machine"]["loadavg"] = [machine["loadavg_start"], machine["loadavg_end"]]
    return {
        "command": " ".join(["uv run --frozen python", *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "setup": setup,
        "kernel": kernel,
    }


def summary(k: dict) -> str:
    b = k["batch"]
    return "\n".join(
        [
            f"ours {k['ours_pages_per_s']:,.0f} pages/s = {k['fraction_of_roofline']:.0%} of the "
            f"{k['bound']} roofline {k['roofline_pages_per_s']:,.0f} (bandwidth "
            f"{k['bandwidth_bound_pages_per_s']:,.0f}, "
            f"bf16 GEMM {k['gemm_bound_pages_per_s']:,.0f})",
            f"colpali-engine {k['colpali_engine_pages_per_s']:,.0f} pages/s "
            f"(ours {k['speedup_vs_colpali_engine']:.1f}x), "
            f"plain torch {k['plain_torch_pages_per_s']:,.0f}",
            f"batch of {b['queries']}: ours {b['ours_query_pages_per_s']:,.0f} query-pages/s "
            f"({b['ours_achieved_tflops']:.2f} TFLOP/s = "
            f"{b['fraction_of_bf16_gemm_roofline']:.0%} of bf16 GEMM), colpali-engine "
            f"{b['colpali_engine_query_pages_per_s']:,.0f}, "
            f"plain torch {b['plain_torch_query_pages_per_s']:,.0f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer pages and rounds (about a minute)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--pages", type=int, help="pages in the buffer (default 4000, quick 2400)")
    p.add_argument("--page-vectors", type=int, default=1030)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--query-tokens", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="queries in the batched measurement")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 3)")
    args = p.parse_args(argv)
    args.pages = args.pages or (2400 if args.quick else 4000)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.colpali_pages = min(args.pages, 256 if args.quick else 512)
    args.colpali_batch_pages = min(args.pages, 64)
    args.fallback_pages = min(args.pages, 256 if args.quick else 512)
    args.gemm_n = 4096  # bf16 GEMM size; fp32 uses half
    result = run(args)
    print(summary(result["kernel"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
