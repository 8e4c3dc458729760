"""Benchmark our PRDC and FID against the reference implementations, in one run.

    python bench/bench_metrics.py [--sizes 2000 5000 10000 20000] [--dim 2048] [--big 50000]
                                  [--out bench/RESULTS.md] [--skip-reference-above N] [--device cpu|cuda]

Per N (real and synthetic sets of N samples each, float32, seeded):

* precision/recall/density/coverage: ours (``build_knn_graph`` + ``auditor.metrics.prdc``) against
  ``prdc.compute_prdc`` on the same data, each in its own child process: wall time, and peak RSS
  (``ru_maxrss``) as absolute and as delta over a baseline taken in the child after imports, warm-up
  and data creation; plus the largest absolute difference of the four values.
* FID: ours (``GaussianStats.from_features`` + ``frechet_distance``) against pytorch-fid's path
  (``np.mean`` / ``np.cov(rowvar=False)`` + ``calculate_frechet_distance``, scipy ``sqrtm``), timed as
  statistics and distance separately, plus the relative difference of the values. numpy's statistics
  are timed twice: from the float64 arrays pytorch-fid keeps, and from our float32 input (the
  conversion included, as ours includes it).

Then ours alone at ``--big`` N, and a Markdown report (``--out``) with machine, tables and targets.
Children are this script re-run with ``--child KIND``; they write one JSON document to ``--result-file``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MIB = 1 << 20
GIB = 1 << 30

# Synthetic features: a shared random rank-R subspace plus isotropic noise (covariance W^T W + I, so
# well conditioned); the synthetic set widens the subspace part and shifts the mean, which keeps all
# four PRDC values away from 0 and 1 (about 0.55 / 0.87 / 0.45 / 0.85).
LOW_RANK = 32
SYNTH_LOW_RANK_SCALE = 1.1
SYNTH_MEAN_SHIFT = 0.1  # per coordinate, in units of the noise standard deviation
GENERATION_ROWS = 1024  # small chunks: generation temporaries must not raise the baseline peak
# Warm-up before the baseline: large enough for torch's parallel (OpenMP) paths and BLAS/LAPACK set-up,
# small enough not to move the memory baseline.
WARMUP_ROWS, WARMUP_FID_DIM = 512, 256

# prdc.compute_prdc's peak RSS growth, bytes per entry of one N x N matrix. Python-level allocations peak
# at ~13 (the float32 distance matrix, sklearn's per-thread float32 chunks, then np.argpartition's int64
# index matrix); RSS measured ~20 at N = 4000-6000 (allocator arenas of sklearn's 8 threads on top).
PRDC_BYTES_PER_PAIR = 21.0

# Targets.
TARGET_N = 10_000
PRDC_MIN_SPEEDUP = 3.0
PRDC_MAX_MEMORY_FRACTION = 0.25
BIG_TARGET_N, BIG_TARGET_DIM, BIG_MAX_PEAK_BYTES = 50_000, 2048, 4 * GIB
FID_TARGET_DIM, FID_MIN_SPEEDUP, FID_MAX_REL_DIFF = 2048, 5.0, 1e-6
# Our statistics (float32 features in, float64 mean and covariance out) no slower than numpy's.
FID_STATS_MIN_SPEEDUP = 1.0

PRDC_KEYS = ("precision", "recall", "density", "coverage")
# The four values are means of per-sample decisions: one differing decision moves a value by >= 1 / (k N),
# so anything below this is the rounding of the mean, not a different result.
EQUAL_TOLERANCE = 1e-9
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------------------------------
# Data and memory


def make_features(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and synthetic float32 features (n x dim each), deterministic in (n, dim, seed)."""
    rank = min(LOW_RANK, dim)
    # Rows of norm ~sqrt(dim / rank): the subspace carries as much total variance as the noise.
    basis = (np.random.default_rng([seed, 0]).standard_normal((rank, dim)) / math.sqrt(rank)).astype(
        np.float32
    )
    shift = np.full(dim, SYNTH_MEAN_SHIFT, dtype=np.float32)
    real = _draw(n, basis, np.zeros(dim, dtype=np.float32), 1.0, np.random.default_rng([seed, 1]))
    synthetic = _draw(n, basis, shift, SYNTH_LOW_RANK_SCALE, np.random.default_rng([seed, 2]))
    return real, synthetic


def _draw(n: int, basis: np.ndarray, mean: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    rank, dim = basis.shape
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, GENERATION_ROWS):
        rows = min(GENERATION_ROWS, n - start)
        block = rng.standard_normal((rows, dim), dtype=np.float32)
        block += (rng.standard_normal((rows, rank), dtype=np.float32) * np.float32(scale)) @ basis
        block += mean
        out[start : start + rows] = block
    return out


def max_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def estimate_prdc_bytes(n: int, dim: int) -> int:
    """prdc.compute_prdc's peak RSS: working memory on top of the two float32 feature sets."""
    return int(PRDC_BYTES_PER_PAIR * n * n + 2 * n * dim * 4)


def mem_available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------------------------------
# Child processes: one measurement each


@dataclass
class Measurement:
    """What one child reports (times in seconds, memory in bytes)."""

    times: list[float]
    baseline_maxrss: int
    baseline_rss: int
    peak_maxrss: int
    values: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        return min(self.times)

    @property
    def peak_delta(self) -> int:
        return self.peak_maxrss - self.baseline_maxrss


def _timed(
    fn: Callable[[], dict[str, float]], repeats: int, sync: Callable[[], None]
) -> tuple[list[float], dict[str, float]]:
    times: list[float] = []
    values: dict[str, float] = {}
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        values = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, values


def _no_sync() -> None:
    return None


def child_ours_prdc(args: argparse.Namespace) -> Measurement:
    import torch

    from auditor.metrics import prdc as ours
    from auditor.metrics.knn import build_knn_graph

    device = torch.device(args.device)
    budget = args.budget_mb * MIB

    def run(real_np: np.ndarray, synth_np: np.ndarray) -> dict[str, float]:
        real, synthetic = torch.from_numpy(real_np).to(device), torch.from_numpy(synth_np).to(device)
        graph = build_knn_graph(real, synthetic, args.k, budget_bytes=budget, dtype=torch.float32)
        return {
            "precision": float(ours.precision(graph)),
            "recall": float(ours.recall(graph)),
            "density": float(ours.density(graph)),
            "coverage": float(ours.coverage(graph)),
        }

    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync
    run(*make_features(WARMUP_ROWS, args.dim, args.seed + 1))  # thread pools, kernels, CUDA context
    real_np, synth_np = make_features(args.n, args.dim, args.seed)
    extra: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    gpu_base = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        gpu_base = torch.cuda.memory_allocated(device)
    baseline_maxrss, baseline_rss = max_rss_bytes(), current_rss_bytes()
    times, values = _timed(lambda: run(real_np, synth_np), args.repeats, sync)
    if device.type == "cuda":
        extra["gpu_peak_delta"] = torch.cuda.max_memory_allocated(device) - gpu_base
    return Measurement(times, baseline_maxrss, baseline_rss, max_rss_bytes(), values, extra)


def child_ref_prdc(args: argparse.Namespace) -> Measurement:
    from prdc import compute_prdc

    def run(real_np: np.ndarray, synth_np: np.ndarray) -> dict[str, float]:
        with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints "Num real: ..."
            result = compute_prdc(real_np, synth_np, nearest_k=args.k)
        return {key: float(result[key]) for key in PRDC_KEYS}

    run(*make_features(WARMUP_ROWS, args.dim, args.seed + 1))  # joblib/BLAS thread pools
    real_np, synth_np = make_features(args.n, args.dim, args.seed)
    baseline_maxrss, baseline_rss = max_rss_bytes(), current_rss_bytes()
    times, values = _timed(lambda: run(real_np, synth_np), args.repeats, _no_sync)
    return Measurement(times, baseline_maxrss, baseline_rss, max_rss_bytes(), values)


def child_fid(args: argparse.Namespace) -> Measurement:
    """Both FID paths in one process, each timed as statistics + distance; peak RSS is not compared."""
    import torch

    sys.path.insert(0, str(HERE))
    from _standins import install_torchvision_standins

    install_torchvision_standins()
    from pytorch_fid.fid_score import calculate_frechet_distance

    from auditor.metrics.fid import frechet_distance
    from auditor.metrics.gaussian import GaussianStats

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else _no_sync

    def ours(real_np: np.ndarray, synth_np: np.ndarray) -> tuple[float, float, float]:
        sync()
        t0 = time.perf_counter()
        real, synthetic = torch.from_numpy(real_np).to(device), torch.from_numpy(synth_np).to(device)
        stats_real, stats_synth = GaussianStats.from_features(real), GaussianStats.from_features(synthetic)
        sync()
        t1 = time.perf_counter()
        value = float(frechet_distance(stats_real, stats_synth))
        t2 = time.perf_counter()
        return value, t1 - t0, t2 - t1

    notes: list[str] = []  # anything calculate_frechet_distance prints (its singular-product fallback)

    def numpy_stats_from_float32(real_np: np.ndarray, synth_np: np.ndarray) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        for x in (real_np, synth_np):
            x64 = x.astype(np.float64)
            _ = np.mean(x64, axis=0), np.cov(x64, rowvar=False)
            del x64
        return math.nan, time.perf_counter() - t0, 0.0

    def reference(real_np: np.ndarray, synth_np: np.ndarray) -> tuple[float, float, float]:
        # pytorch-fid keeps activations in a float64 array (np.empty((n, dims))); the conversion is
        # outside the timing, as it is part of its feature extraction, not of its statistics.
        real64, synth64 = real_np.astype(np.float64), synth_np.astype(np.float64)
        t0 = time.perf_counter()
        mu1, sigma1 = np.mean(real64, axis=0), np.cov(real64, rowvar=False)
        mu2, sigma2 = np.mean(synth64, axis=0), np.cov(synth64, rowvar=False)
        t1 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()) as printed, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy's deprecation of sqrtm(disp=...)
            value = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
        t2 = time.perf_counter()
        if printed.getvalue():
            notes.append(printed.getvalue().strip())
        return value, t1 - t0, t2 - t1

    with_reference = args.skip_fid_reference_above is None or args.n <= args.skip_fid_reference_above
    paths = {"ours": ours}
    if with_reference:
        paths |= {"ref": reference, "ref32": numpy_stats_from_float32}
    warm = make_features(WARMUP_ROWS, min(args.dim, WARMUP_FID_DIM), args.seed + 1)
    ours(*warm)
    if with_reference:
        try:
            reference(*warm)
        except Exception as exc:  # e.g. SciPy >= 1.18, whose sqrtm no longer takes pytorch-fid's disp=
            notes.append(f"reference failed, skipped: {type(exc).__name__}: {exc}")
            with_reference = False
            paths = {"ours": ours}
        else:
            numpy_stats_from_float32(*warm)
    real_np, synth_np = make_features(args.n, args.dim, args.seed)
    baseline_maxrss, baseline_rss = max_rss_bytes(), current_rss_bytes()
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of a shared machine hits every path
        for name, path in paths.items():
            runs[name].append(path(real_np, synth_np))
    extra: dict[str, Any] = {"notes": notes, "with_reference": with_reference}
    extra["skip_above"] = args.skip_fid_reference_above
    for name, results in runs.items():
        extra[f"{name}_stats_s"] = min(r[1] for r in results)
        extra[f"{name}_distance_s"] = min(r[2] for r in results)
        extra[f"{name}_total_s"] = min(r[1] + r[2] for r in results)
        extra[f"{name}_stats_all_s"] = [r[1] for r in results]
    values = {"ours": runs["ours"][-1][0], "ref": runs["ref"][-1][0] if with_reference else math.nan}
    times = [extra["ours_total_s"]]
    return Measurement(times, baseline_maxrss, baseline_rss, max_rss_bytes(), values, extra)


CHILDREN: dict[str, Callable[[argparse.Namespace], Measurement]] = {
    "ours-prdc": child_ours_prdc,
    "ref-prdc": child_ref_prdc,
    "fid": child_fid,
}


def child_main(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = CHILDREN[args.child](args)
    Path(args.result_file).write_text(json.dumps(result.__dict__))


# --------------------------------------------------------------------------------------------------
# Parent: orchestration


@dataclass
class Outcome:
    """A child's measurement, or why there is none."""

    measurement: Measurement | None = None
    reason: str = ""


def run_child(kind: str, n: int, args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        options = {
            "--child": kind, "--n": n, "--dim": args.dim, "--k": args.k, "--seed": args.seed,
            "--device": args.device, "--budget-mb": args.budget_mb, "--repeats": args.repeats,
            "--threads": args.threads, "--result-file": result_file,
        }  # fmt: skip
        if args.skip_fid_reference_above is not None:
            options["--skip-fid-reference-above"] = args.skip_fid_reference_above
        command = [sys.executable, str(Path(__file__).resolve())]
        command += [str(item) for pair in options.items() for item in pair]
        started = time.perf_counter()
        env = dict(os.environ)
        if args.threads:
            env.update(dict.fromkeys(THREAD_VARIABLES, str(args.threads)))
        proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 or not result_file.exists():
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            how = "killed (out of memory?)" if proc.returncode < 0 else f"exit {proc.returncode}"
            log(f"  {kind:9s} N={n}: FAILED ({how}): {tail}")
            return Outcome(reason=f"failed ({how}): {tail}")
        measurement = Measurement(**json.loads(result_file.read_text()))
    log(
        f"  {kind:9s} N={n}: {measurement.time:8.3f} s, peak +{measurement.peak_delta / MIB:.0f} MiB "
        f"(child wall {elapsed:.1f} s)"
    )
    return Outcome(measurement)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class SizeResult:
    n: int
    ours: Outcome
    ref: Outcome
    fid: Outcome


def reference_skip_reason(n: int, args: argparse.Namespace) -> str:
    need = estimate_prdc_bytes(n, args.dim)
    limit = min(args.reference_memory_limit_gib * GIB, 0.8 * mem_available_bytes())
    if args.skip_reference_above is not None and n > args.skip_reference_above:
        above = args.skip_reference_above
        return f"skipped (N > --skip-reference-above {above}; would need ~{need / GIB:.1f} GiB)"
    if need > limit:
        return f"skipped (would need ~{need / GIB:.1f} GiB; limit {limit / GIB:.1f} GiB)"
    return ""


def parent_main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    results: list[SizeResult] = []
    for n in args.sizes:
        log(f"N={n}, d={args.dim}")
        ours = run_child("ours-prdc", n, args)
        skip = reference_skip_reason(n, args)
        if skip:
            log(f"  ref-prdc  N={n}: {skip}")
        ref = Outcome(reason=skip) if skip else run_child("ref-prdc", n, args)
        fid = run_child("fid", n, args)
        results.append(SizeResult(n, ours, ref, fid))
    big = Outcome(reason="not run (--big 0)")
    if args.big > 0:
        log(f"big: N={args.big}, d={args.dim}")
        big = run_child("ours-prdc", args.big, args)
    finished = datetime.datetime.now(datetime.timezone.utc)
    report = render_report(args, results, big, started, finished, load_before, os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    log(f"wrote {out}")


# --------------------------------------------------------------------------------------------------
# Report


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / MIB:,.0f}"


def _peak(m: Measurement) -> str:
    return f"{_mib(m.peak_delta)} ({_mib(m.peak_maxrss)})"


def _machine() -> list[str]:
    import sklearn  # noqa: F401  (loads its native libraries, for threadpool_info)
    import threadpoolctl
    import torch

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        ram_kib = int(f.readline().split()[1])
    blas = sorted(
        {
            f"{p['internal_api']} {p.get('version') or ''} ({p['num_threads']} threads)".replace("  ", " ")
            for p in threadpoolctl.threadpool_info()
        }
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("numpy", "scikit-learn", "scipy", "prdc", "pytorch-fid")
    )
    return [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable)",
        f"- RAM: {ram_kib / (1 << 20):.1f} GiB; OS: {platform.platform()}",
        f"- Python {platform.python_version()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op threads); {versions}",
        f"- Thread pools (parent process): {'; '.join(blas)}",
    ]


def _verdict(ok: bool, at_target: bool) -> str:
    verdict = "**met**" if ok else "**not met**"
    return verdict if at_target else f"{verdict} (indicative only: not the target size)"


def _prdc_diff(ours: Measurement, ref: Measurement) -> float:
    return max(abs(ours.values[key] - ref.values[key]) for key in PRDC_KEYS)


def _fid_rel_diff(m: Measurement) -> float:
    return abs(m.values["ours"] - m.values["ref"]) / max(abs(m.values["ref"]), 1e-300)


def prdc_table(results: list[SizeResult], dim: int) -> str:
    rows = []
    for r in results:
        ours, ref = r.ours.measurement, r.ref.measurement
        if ours is None:
            rows.append([f"{r.n:,}", r.ours.reason, *[""] * 7])
            continue
        if ref is None:
            rows.append([f"{r.n:,}", f"{ours.time:.3f}", r.ref.reason, "", _peak(ours), "", "", "", ""])
            continue
        diff = _prdc_diff(ours, ref)
        rows.append(
            [
                f"{r.n:,}",
                f"{ours.time:.3f}",
                f"{ref.time:.3f}",
                f"{ref.time / ours.time:.2f}x",
                _peak(ours),
                _peak(ref),
                f"{ours.peak_delta / max(ref.peak_delta, 1):.3f}",
                f"{diff:.2e}",
                "yes" if diff <= EQUAL_TOLERANCE else "no",
            ]
        )
    headers = [
        "N",
        "ours s",
        "prdc s",
        "speedup",
        "ours peak MiB: delta (abs)",
        "prdc peak MiB: delta (abs)",
        "memory ratio ours/prdc (delta)",
        "max abs diff",
        "equal",
    ]
    return f"d = {dim}; k as given; both sets of N samples.\n\n" + _md_table(headers, rows)


def fid_table(results: list[SizeResult], dim: int) -> str:
    rows = []
    for r in results:
        m = r.fid.measurement
        if m is None:
            rows.append([f"{r.n:,}", r.fid.reason, *[""] * 11])
            continue
        x = m.extra
        note = "N <= d: singular covariances" if r.n <= dim else ""
        if x["notes"]:
            note = (note + "; " if note else "") + "pytorch-fid: " + " / ".join(x["notes"])
        ours = [f"{r.n:,}", f"{x['ours_stats_s']:.3f}", f"{x['ours_distance_s']:.3f}"]
        if not x.get("with_reference", True):
            skipped = f"reference skipped (N > --skip-fid-reference-above {x.get('skip_above')})"
            if x["notes"]:
                skipped = "reference skipped: " + " / ".join(x["notes"])
            rows.append([*ours, skipped, *[""] * 6, f"{m.values['ours']:.6g}", "", note])
            continue
        rows.append(
            [
                *ours,
                f"{x['ref_stats_s']:.3f}",
                f"{x['ref32_stats_s']:.3f}" if "ref32_stats_s" in x else "",
                f"{x['ref_stats_s'] / x['ours_stats_s']:.2f}x",
                f"{x['ref_distance_s']:.3f}",
                f"{x['ref_distance_s'] / x['ours_distance_s']:.2f}x",
                f"{x['ref_total_s'] / x['ours_total_s']:.2f}x",
                f"{m.values['ours']:.6g}",
                f"{_fid_rel_diff(m):.2e}",
                note,
            ]
        )
    headers = [
        "N",
        "ours stats s",
        "ours distance s",
        "numpy stats s (float64 in)",
        "numpy stats s (float32 in)",
        "speedup (stats)",
        "pytorch-fid distance s",
        "speedup (distance)",
        "speedup (total)",
        "FID (ours)",
        "rel diff",
        "note",
    ]
    return (
        f"d = {dim}. Statistics = means + covariances of both sets (ours: float32 features in, float64 "
        "out; numpy: `np.mean` + `np.cov(rowvar=False)` on the float64 arrays pytorch-fid keeps, and from "
        "our float32 arrays with the conversion timed); distance = the d x d part. Speedups are numpy / "
        "pytorch-fid time over ours (stats: against numpy from float64).\n\n" + _md_table(headers, rows)
    )


def big_section(big: Outcome, args: argparse.Namespace) -> str:
    m = big.measurement
    if m is None:
        return f"N = {args.big:,}, d = {args.dim}: {big.reason}"
    rows = [[f"{args.big:,}", str(args.dim), f"{m.time:.2f}", _mib(m.peak_delta), _mib(m.peak_maxrss)]]
    text = _md_table(["N", "d", "ours s", "peak delta MiB", "peak abs MiB"], rows)
    if "gpu_peak_delta" in m.extra:
        text += f"\n\nGPU peak allocated (delta): {_mib(m.extra['gpu_peak_delta'])} MiB"
    return text


def targets_section(results: list[SizeResult], big: Outcome, args: argparse.Namespace) -> list[str]:
    return [
        _prdc_target(results, args),
        _big_target(big, args),
        _fid_target(results, args),
        _fid_stats_target(results, args),
    ]


def _prdc_target(results: list[SizeResult], args: argparse.Namespace) -> str:
    target = (
        f"- PRDC at N={TARGET_N:,}: >= {PRDC_MIN_SPEEDUP:g}x faster than prdc with <= 1/4 of its peak "
        "memory (peak deltas over the children's baselines), same values"
    )
    both = [r for r in results if r.ours.measurement is not None and r.ref.measurement is not None]
    if not both:
        return f"{target}: not measured (no N with both runs)"
    r = min(both, key=lambda r: (abs(r.n - TARGET_N), -r.n))
    ours, ref = r.ours.measurement, r.ref.measurement
    assert ours is not None and ref is not None
    speedup, fraction = ref.time / ours.time, ours.peak_delta / max(ref.peak_delta, 1)
    diff = _prdc_diff(ours, ref)
    ok = speedup >= PRDC_MIN_SPEEDUP and fraction <= PRDC_MAX_MEMORY_FRACTION and diff <= EQUAL_TOLERANCE
    return (
        f"{target}: {_verdict(ok, r.n == TARGET_N)} at N={r.n:,}, d={args.dim}: speedup {speedup:.2f}x, "
        f"memory {fraction:.3f} of prdc's, max abs diff {diff:.2e}"
    )


def _big_target(big: Outcome, args: argparse.Namespace) -> str:
    target = (
        f"- N={BIG_TARGET_N:,}, d={BIG_TARGET_DIM}: completes within {BIG_MAX_PEAK_BYTES / GIB:g} GiB "
        "peak RSS (absolute, whole process)"
    )
    at_target = (args.big, args.dim) == (BIG_TARGET_N, BIG_TARGET_DIM)
    m = big.measurement
    if m is None:
        return f"{target}: {'not measured' if args.big <= 0 else _verdict(False, at_target)} ({big.reason})"
    return (
        f"{target}: {_verdict(m.peak_maxrss <= BIG_MAX_PEAK_BYTES, at_target)} at N={args.big:,}, "
        f"d={args.dim}: peak {_mib(m.peak_maxrss)} MiB (delta {_mib(m.peak_delta)} MiB), {m.time:.1f} s"
    )


def _fid_target(results: list[SizeResult], args: argparse.Namespace) -> str:
    target = (
        f"- FID at d={FID_TARGET_DIM}: >= {FID_MIN_SPEEDUP:g}x faster than pytorch-fid's scipy path "
        f"(calculate_frechet_distance, the d x d part) and equal to {FID_MAX_REL_DIFF:g} relative"
    )
    measured = [r for r in results if _fid_with_reference(r)]
    if not measured:
        return f"{target}: not measured"
    # Prefer N > d (non-singular covariances), then the N closest to the PRDC target's.
    r = min(measured, key=lambda r: (r.n <= args.dim, abs(r.n - TARGET_N), -r.n))
    assert r.fid.measurement is not None
    x, rel = r.fid.measurement.extra, _fid_rel_diff(r.fid.measurement)
    speedup, total = x["ref_distance_s"] / x["ours_distance_s"], x["ref_total_s"] / x["ours_total_s"]
    ok = speedup >= FID_MIN_SPEEDUP and rel <= FID_MAX_REL_DIFF
    return (
        f"{target}: {_verdict(ok, args.dim == FID_TARGET_DIM)} at N={r.n:,}, d={args.dim}: distance "
        f"speedup {speedup:.2f}x, rel diff {rel:.2e} (for information, with the statistics: {total:.2f}x)"
    )


def _fid_with_reference(r: SizeResult) -> bool:
    return r.fid.measurement is not None and bool(r.fid.measurement.extra.get("with_reference", True))


def _fid_stats_target(results: list[SizeResult], args: argparse.Namespace) -> str:
    target = (
        f"- FID statistics at N={TARGET_N:,}, d={FID_TARGET_DIM}: ours (float32 in, float64 out) no "
        "slower than numpy's `np.mean` + `np.cov` on the float64 arrays (speedup >= "
        f"{FID_STATS_MIN_SPEEDUP:g}x)"
    )
    measured = [r for r in results if _fid_with_reference(r)]
    if not measured:
        return f"{target}: not measured"
    r = min(measured, key=lambda r: (abs(r.n - TARGET_N), -r.n))
    assert r.fid.measurement is not None
    x = r.fid.measurement.extra
    speedup = x["ref_stats_s"] / x["ours_stats_s"]
    at_target = r.n == TARGET_N and args.dim == FID_TARGET_DIM
    from32 = f", numpy from float32 {x['ref32_stats_s']:.3f} s" if "ref32_stats_s" in x else ""
    return (
        f"{target}: {_verdict(speedup >= FID_STATS_MIN_SPEEDUP, at_target)} at N={r.n:,}, d={args.dim}: "
        f"ours {x['ours_stats_s']:.3f} s, numpy {x['ref_stats_s']:.3f} s{from32} ({speedup:.2f}x)"
    )


def _setup(args: argparse.Namespace) -> list[str]:
    rank = min(LOW_RANK, args.dim)
    threads = "library defaults"
    if args.threads:
        threads = f"{args.threads} (--threads: torch and {', '.join(THREAD_VARIABLES)})"
    return [
        f"- Features: float32, real and synthetic N x {args.dim} each, seed {args.seed}: isotropic unit "
        f"noise plus a shared random rank-{rank} subspace; the synthetic set scales the subspace by "
        f"{SYNTH_LOW_RANK_SCALE} and shifts the mean by {SYNTH_MEAN_SHIFT} per coordinate.",
        f"- PRDC: k={args.k}; ours = `build_knn_graph(dtype=float32, budget={args.budget_mb} MiB)` + the "
        f"four `auditor.metrics.prdc` means on device `{args.device}`; reference = `prdc.compute_prdc`.",
        "- Each PRDC measurement runs in its own child process; peak = `ru_maxrss`, delta = peak minus "
        "the child's `ru_maxrss` after imports, a small warm-up and data creation (abs = whole process).",
        f"- Times are the minimum over {args.repeats} repeat(s) of the computation, from the float32 "
        "arrays to the metric values. FID reference statistics start from float64 arrays, as "
        "pytorch-fid keeps them.",
        f"- Threads: {threads}; prdc's sklearn distances also run 8 joblib threads (hard-coded n_jobs=8).",
        "- Results are only comparable within one run (same machine, same load).",
    ]


def render_report(
    args: argparse.Namespace,
    results: list[SizeResult],
    big: Outcome,
    started: datetime.datetime,
    finished: datetime.datetime,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    command = "python " + shlex.join(sys.argv)
    load = f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)}"
    parts = [
        "# Metric benchmarks",
        "",
        f"Command: `{command}`",
        "",
        f"Run: {started:%Y-%m-%d %H:%M:%S} - {finished:%H:%M:%S} UTC; load average (1/5/15 min) "
        f"before {load}.",
        "",
        "## Machine",
        "",
        *_machine(),
        "",
        "## Setup",
        "",
        *_setup(args),
        "",
        "## Precision / recall / density / coverage",
        "",
        prdc_table(results, args.dim),
        "",
        "## FID",
        "",
        fid_table(results, args.dim),
        "",
        "## Large N (ours only)",
        "",
        big_section(big, args),
        "",
        "## Targets",
        "",
        *targets_section(results, big, args),
        "",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--big", type=int, default=50_000, help="N for the ours-only run (0: skip)")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--skip-reference-above",
        type=int,
        default=None,
        metavar="N",
        help="do not run prdc.compute_prdc for larger N",
    )
    parser.add_argument(
        "--reference-memory-limit-gib",
        type=float,
        default=16.0,
        help="skip prdc.compute_prdc where its estimated peak exceeds this (or 80%% of MemAvailable)",
    )
    parser.add_argument(
        "--skip-fid-reference-above",
        type=int,
        default=None,
        metavar="N",
        help="time only our FID for larger N (pytorch-fid's scipy sqrtm at d=2048 takes tens of seconds)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget-mb", type=int, default=128, help="our engine's memory budget (MetricParams default)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for torch and the BLAS/OpenMP pools in every child (0: library defaults)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed repeats per measurement (minimum reported)"
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
    else:
        parent_main(args)


if __name__ == "__main__":
    main()
