"""FID statistics alone: ``GaussianStats.from_features`` against numpy's ``np.mean`` + ``np.cov``, one run.

    python bench/bench_fid_stats.py [--n 10000] [--dim 2048] [--rounds 7] [--baseline-rev REV]
                                    [--device cpu|cuda] [--out FILE]

On bench_metrics.py's seeded float32 features (real and synthetic, N x d each), in interleaved rounds
(every path once per round, so that a slow spell of a shared machine lands on all of them):

* ``ours``: ``GaussianStats.from_features`` of both sets, float32 in, float64 mean and covariance out;
* ``baseline``: the same function from ``auditor/metrics/gaussian.py`` at git revision ``--baseline-rev``
  (e.g. ``HEAD`` for "before"), loaded from ``git show`` into a throw-away module;
* ``numpy (float64 in)``: pytorch-fid's statistics, ``np.mean`` / ``np.cov(rowvar=False)`` on the float64
  arrays it keeps (the conversion is not timed: it belongs to pytorch-fid's extraction);
* ``numpy (float32 in)``: the same with the conversion from our float32 arrays timed.

Reports the median and the minimum of each path, the median over rounds of each path's time divided by
numpy's (float64 in) in the same round, and the largest covariance difference from numpy's.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from bench_metrics import make_features  # noqa: E402

from auditor.metrics.gaussian import GaussianStats  # noqa: E402

Stats = Callable[[], list[tuple[np.ndarray, np.ndarray]]]


def load_baseline(rev: str, scratch: Path) -> ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:auditor/metrics/gaussian.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = scratch / "gaussian_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("gaussian_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def torch_path(cls: type, sides: list[np.ndarray], device: torch.device) -> Stats:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> list[tuple[np.ndarray, np.ndarray]]:
        out = [cls.from_features(torch.from_numpy(x).to(device)) for x in sides]
        sync()
        return [(s.mean.cpu().numpy(), s.cov.cpu().numpy()) for s in out]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-rev", default=None, help="git revision of gaussian.py to compare with")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    args = parser.parse_args()
    device = torch.device(args.device)

    real, synthetic = make_features(args.n, args.dim, args.seed)
    sides = [real, synthetic]
    sides64 = [x.astype(np.float64) for x in sides]

    def numpy64() -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.mean(x, axis=0), np.cov(x, rowvar=False)) for x in sides64]

    def numpy32() -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for x in sides:
            x64 = x.astype(np.float64)
            out.append((np.mean(x64, axis=0), np.cov(x64, rowvar=False)))
        return out

    with tempfile.TemporaryDirectory() as scratch:
        paths: dict[str, Stats] = {"numpy (float64 in)": numpy64, "numpy (float32 in)": numpy32}
        paths["ours"] = torch_path(GaussianStats, sides, device)
        if args.baseline_rev:
            baseline = load_baseline(args.baseline_rev, Path(scratch))
            paths[f"baseline ({args.baseline_rev})"] = torch_path(baseline.GaussianStats, sides, device)
        results: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for name, path in paths.items():  # warm-up: thread pools, allocator, kernels
            results[name] = path()
        times: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, path in paths.items():
                start = time.perf_counter()
                path()
                times[name].append(time.perf_counter() - start)

    reference = results["numpy (float64 in)"]
    numpy_times = np.array(times["numpy (float64 in)"])
    rows = []
    for name, values in times.items():
        ratio = float(np.median(np.array(values) / numpy_times))
        err = max(
            float(np.abs(cov - ref_cov).max() / np.abs(ref_cov).max())
            for (_, cov), (_, ref_cov) in zip(results[name], reference, strict=True)
        )
        rows.append(
            f"| {name} | {np.median(values):.3f} | {min(values):.3f} | {ratio:.2f} | {err:.1e} | "
            + " ".join(f"{t:.2f}" for t in values)
            + " |"
        )
    command = "python bench/bench_fid_stats.py " + " ".join(sys.argv[1:])
    report = "\n".join(
        [
            f"# FID statistics: two sets of N={args.n:,} x d={args.dim} float32, "
            f"{args.rounds} interleaved rounds",
            "",
            f"- command: `{command}`",
            f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} at the end; torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}; "
            f"device {args.device}",
            "",
            "| path | median s | min s | median time / numpy (float64 in), per round | max cov error "
            "/ max abs cov vs numpy | rounds s |",
            "|---|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
