"""Page leg at scale: kernel table, scale table and dev-proxy quality in one JSON file.

Run through ``bash benchmarks/late_interaction/run.sh [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith(("Model name", "Flags")):
                key, _, val = line.partition(":")
                val = val.strip()
                if key == "Flags":
                    val = " ".join(
                        f for f in val.split() if f.startswith(("avx512f", "amx", "avx2"))
                    )
                info[key.strip().lower().replace(" ", "_")] = val
    except OSError:
        pass
    try:
        load = os.getloadavg()
        info["load_average_at_start"] = [round(x, 2) for x in load]
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["shared_box"] = "yes: other engineers' jobs ran on the same 2 cores during this run"
    return info


def kernel_table(quick: bool) -> dict:
    script = HERE / "kernel.py"
    if not script.exists():
        return {"error": "benchmarks/late_interaction/kernel.py (kernel work) not present"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "kernel.json"
        cmd = [sys.executable, str(script), "--json", str(out), *(["--quick"] if quick else [])]
        log("kernel table: " + " ".join(cmd[1:]))
        proc = subprocess.run(cmd, check=False)
        if proc.returncode or not out.exists():
            return {"error": f"kernel.py exited {proc.returncode}"}
        data = json.loads(out.read_text())
    return data.get("kernel", data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="kernel table + 10k pages only")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument(
        "--sizes", default=None, help="comma-separated page counts (default by mode), or none"
    )
    ap.add_argument("--tokens", type=int, default=128, help="synthetic vectors per page")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mm-li-bench")
    ap.add_argument("--skip-kernel", action="store_true")
    ap.add_argument(
        "--kernel-from", type=Path, help="take the kernel table from an earlier result JSON"
    )
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--reps", default=None, help="comma-separated representation names to run")
    ap.add_argument(
        "--reuse-tables",
        action="store_true",
        help="open a synthetic table an earlier run wrote under --work (same size, tokens, seed)",
    )
    args = ap.parse_args()
    if args.sizes == "none":  # kernel and/or quality only
        sizes = []
    elif args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [10_000] if args.quick else [10_000, 100_000]
    import scale

    if args.reps:
        keep = args.reps.split(",")
        unknown = set(keep) - set(scale.REPRESENTATIONS)
        if unknown:
            ap.error(f"unknown representations {sorted(unknown)}; see scale.REPRESENTATIONS")
        scale.REPRESENTATIONS = {k: v for k, v in scale.REPRESENTATIONS.items() if k in keep}

    result: dict = {
        "command": "bash benchmarks/late_interaction/run.sh " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "kernel": {} if args.skip_kernel or args.kernel_from else kernel_table(args.quick),
        "scale_corpus": scale.__doc__.strip(),
        "scale": [],
    }
    if args.kernel_from:
        earlier = json.loads(args.kernel_from.read_text())
        result["kernel"] = earlier["kernel"]
        result["kernel_from"] = {"command": earlier["command"], "date": earlier["date"]}
    args.work.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        result["scale"].extend(
            scale.run_size(
                args.work, n, args.tokens, args.queries, 2 * 2**30, log, reuse=args.reuse_tables
            )
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    if not args.skip_quality:
        import quality

        data = ROOT.parent / "shared" / "data" / "mmlongbench-dev"
        if not data.exists():
            data = Path("/work/shared/data/mmlongbench-dev")
        log(f"dev proxy quality on {data}")
        proxy = quality.proxy_multivectors(data)
        result["quality"] = {
            "method": quality.__doc__.strip(),
            "encode_s": round(proxy["encode_s"], 1),
            "rows": quality.evaluate(proxy, log),
        }
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text)
        log(f"wrote {args.json}")
    else:
        print(text)


if __name__ == "__main__":
    main()
