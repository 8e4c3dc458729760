"""Before/after in one run: the scoring step, the kNN engine, CLI start-up and ``auditor demo``.

    python bench/bench_scoring.py [--baseline-rev REV] [--out bench/RESULTS_scoring.md] [--repeats 3]

The working tree and a git revision (``--baseline-rev``, e.g. the commit before a change) are each
exported to a scratch folder and measured in child processes with that tree first on ``PYTHONPATH``,
alternating between the two so that a slow spell of a shared machine lands on both:

* score: ``evaluate`` on the demo's data (digits real 898 x 64, generation 0, the holdout; every metric,
  default bootstrap), as ``auditor demo`` scores each generation;
* knn: ``build_knn_graph`` (float32, k = 5) on seeded Gaussians at a few sizes;
* cli: wall time of ``auditor --help``, ``auditor history`` (an empty SQLite database) and
  ``auditor gate --help`` in fresh interpreters;
* demo: wall time of ``auditor demo`` into a scratch ``AUDITOR_HOME``.

Each figure is the minimum (knn) or median (the rest) over ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNN_SIZES = ((2000, 64), (10000, 64), (2000, 2048), (10000, 2048))

SCORE_CHILD = """
import sys
import auditor
assert auditor.__file__.startswith(sys.argv[2]), auditor.__file__  # the tree under test, not another
import json, statistics, tempfile, time, warnings
from pathlib import Path
import numpy as np, torch
from auditor.demo import build_demo_data
from auditor.pipeline.evaluate import MetricParams, evaluate
warnings.simplefilter("ignore")
paths = build_demo_data(Path(tempfile.mkdtemp()))
real = torch.from_numpy(np.load(paths.real))
holdout = torch.from_numpy(np.load(paths.holdout))
gen0 = torch.from_numpy(np.load(paths.generations[0]))
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    evaluate(real, gen0, holdout, MetricParams())
    times.append(time.perf_counter() - start)
print(json.dumps({"score_s": statistics.median(times), "shape": list(real.shape)}))
"""

KNN_CHILD = """
import json, sys, time, torch
from auditor.metrics.knn import build_knn_graph
n, d, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
gen = torch.Generator().manual_seed(0)
real = torch.randn(n, d, generator=gen)
synthetic = 0.2 + torch.randn(n, d, generator=gen)
build_knn_graph(real[:500], synthetic[:500], 5, dtype=torch.float32)
times = []
for _ in range(repeats):
    start = time.perf_counter()
    build_knn_graph(real, synthetic, 5, dtype=torch.float32)
    times.append(time.perf_counter() - start)
print(json.dumps({"knn_s": min(times)}))
"""

CLI_CHILD = "from auditor.cli.main import app; app()"


def export_tree(rev: str | None, scratch: Path) -> Path:
    """The working tree as is (``rev`` None) or a revision, exported without .git."""
    target = scratch / (rev or "working-tree").replace("/", "_")
    target.mkdir(parents=True)
    if rev is None:
        files = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        for name in filter(None, files):
            source = ROOT / name.decode()
            if source.is_file():
                (target / name.decode()).parent.mkdir(parents=True, exist_ok=True)
                (target / name.decode()).write_bytes(source.read_bytes())
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def child_env(tree: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    env["AUDITOR_HOME"] = str(home)
    env["AUDITOR_DATABASE_URL"] = f"sqlite:///{home / 'auditor.db'}"
    return env


def run_json(args: list[str], env: dict[str, str]) -> dict[str, float]:
    # cwd = the tree: with ``-c`` the current directory comes first on sys.path, before PYTHONPATH.
    done = subprocess.run(
        args, capture_output=True, text=True, env=env, cwd=env["PYTHONPATH"], check=True, timeout=1800
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def wall(args: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    # cwd: a scratch home (first on sys.path with -c, and holds nothing importable)
    subprocess.run(args, capture_output=True, env=env, cwd=cwd, check=True, timeout=1800)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-rev", default="HEAD", help="git revision to compare with (before)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "RESULTS_scoring.md"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    started = datetime.now(timezone.utc)
    load_before = os.getloadavg()
    results: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        trees = {"before": export_tree(args.baseline_rev, scratch), "after": export_tree(None, scratch)}
        py = sys.executable

        def each(measure: str, fn) -> None:  # type: ignore[no-untyped-def]
            for label in ("before", "after"):
                home = Path(tempfile.mkdtemp(dir=scratch))
                results[label][measure] = fn(trees[label], child_env(trees[label], home), home)
                print(f"{label:6s} {measure:22s} {results[label][measure]:.3f} s", flush=True)

        each(
            "score",
            lambda t, e, h: run_json([py, "-c", SCORE_CHILD, str(args.repeats), str(t)], e)["score_s"],
        )
        for n, d in KNN_SIZES:
            each(
                f"knn {n} x {d}",
                lambda t, e, h, n=n, d=d: run_json(
                    [py, "-c", KNN_CHILD, str(n), str(d), str(args.repeats)], e
                )["knn_s"],
            )
        for verb in (["--help"], ["history"], ["gate", "--help"]):
            each(
                "cli " + " ".join(verb),
                lambda t, e, h, verb=verb: statistics.median(
                    wall([py, "-c", CLI_CHILD, *verb], e, h) for _ in range(max(5, args.repeats))
                ),
            )
        if not args.skip_demo:
            each("demo", lambda t, e, h: wall([py, "-c", CLI_CHILD, "demo"], e, h))
    load_after = os.getloadavg()
    lines = [
        "# Scoring, kNN engine, CLI start-up and the demo: before / after",
        "",
        "Command: `python bench/bench_scoring.py "
        f"--baseline-rev {args.baseline_rev} --repeats {args.repeats}`",
        "",
        f"Run: {started:%Y-%m-%d %H:%M} UTC on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical cores; torch threads: library default. Load average before "
        f"{load_before[0]:.2f}, after {load_after[0]:.2f}.",
        "",
        f"before = `{args.baseline_rev}`, after = the working tree; both measured in this run, alternating.",
        "",
        "| measurement | before s | after s | after / before |",
        "|---|---:|---:|---:|",
    ]
    for measure, before in results["before"].items():
        after = results["after"][measure]
        lines.append(f"| {measure} | {before:.3f} | {after:.3f} | {after / before:.2f} |")
    lines += [
        "",
        "- score: `evaluate` of the demo's generation 0 against the digits (898 x 64) with the holdout, "
        "every metric, default bootstrap (median of the repeats, one process).",
        "- knn: `build_knn_graph(float32, k=5)` on seeded Gaussians, N real and N synthetic (minimum).",
        "- cli: a fresh interpreter per call (median); demo: `auditor demo`, one run.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
