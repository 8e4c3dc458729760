"""The sections of bench/gpu_check.sh that run Python: one subcommand each, each leaving JSON in WORK.

    python bench/bench_gpu.py env        --work WORK [--device cuda]
    python bench/bench_gpu.py metrics    --work WORK [--device cuda] [--sizes 10000 50000] [--dim 2048]
    python bench/bench_gpu.py images     --work WORK [--device cuda] [--n 2000] [--side 256]
    python bench/bench_gpu.py audit-data --work WORK [--n 50000] [--dim 2048]
    python bench/bench_gpu.py report     --work WORK --out RESULTS.md [--smoke]

Every section writes its JSON as it goes (a section stopped by its timeout keeps what it measured), and
``report`` turns whatever is there, plus ``sections.tsv`` (status and seconds of every section, written by
the shell script) and the logs, into the Markdown results with met / not met against the targets.

Image sections need no download: the FID Inception and DINOv2 ViT-B/14 weights are seeded random tensors
with the released checkpoints' names and shapes, saved under the released file names, and each extractor
class's pinned :class:`~auditor.extractors.weights.WeightsSpec` is replaced by one pinned to the generated
file's SHA-256, so the real lookup (``AUDITOR_WEIGHTS_DIR``) and checksum code runs unchanged (as the
tests do it: tests/helpers/digit_images.py).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for entry in (str(ROOT), str(HERE), str(ROOT / "tests")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

# Targets (see bench/README.md, "gpu_check.sh").
KNN_TARGET_N, KNN_TARGET_DIM, KNN_TARGET_S = 50_000, 2048, 2.0
AUDIT_TARGET_N, AUDIT_TARGET_DIM, AUDIT_TARGET_S = 50_000, 2048, 60.0
PRDC_EQUAL = 1e-9  # bench_metrics.EQUAL_TOLERANCE
FID_REL = 1e-6  # bench_metrics.FID_MAX_REL_DIFF
# Proposed (no target was set): the loader keeps the GPU busy when end-to-end reaches this share of the
# model-only rate.
E2E_SHARE_PROPOSED = 0.8

WEIGHTS_SEED = 20_241_123


def log(message: str) -> None:
    print(f"[bench_gpu] {message}", file=sys.stderr, flush=True)


class JsonDoc:
    """A JSON document rewritten after every update, so that a killed section leaves what it had."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def flush(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=1, default=str), encoding="utf-8")
        temporary.replace(self.path)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()[:500]


# --------------------------------------------------------------------------------------------------
# env


def cmd_env(args: argparse.Namespace) -> int:
    doc = JsonDoc(Path(args.work) / "env.json")
    doc.set("python", f"{platform.python_version()} ({sys.executable})")
    doc.set("platform", platform.platform())
    doc.set("cpus", os.cpu_count())
    import numpy as np
    import torch

    doc.set("numpy", np.__version__)
    doc.set("torch", torch.__version__)
    doc.set("torch_cuda_build", torch.version.cuda)
    doc.set("cuda_available", torch.cuda.is_available())
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        doc.set("device_name", props.name)
        doc.set("device_memory_gib", round(props.total_memory / 2**30, 1))
        doc.set("device_capability", f"{props.major}.{props.minor}")
        doc.set("device_count", torch.cuda.device_count())
        doc.set("cudnn", torch.backends.cudnn.version())
        doc.set("tf32_matmul", torch.backends.cuda.matmul.allow_tf32)
        doc.set("tf32_cudnn", torch.backends.cudnn.allow_tf32)
    try:
        import torchvision

        doc.set("torchvision", torchvision.__version__)
    except Exception as exc:
        doc.set("torchvision", f"not importable: {_error(exc)}")
    if torch.cuda.is_available():
        try:
            from auditor.extractors.images import nvjpeg_decoder

            nvjpeg_decoder(torch.device("cuda"))
            doc.set("nvjpeg", "works")
        except Exception as exc:
            doc.set("nvjpeg", f"unavailable: {_error(exc)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        log("CUDA requested but torch sees no CUDA device")
        return 3
    return 0


# --------------------------------------------------------------------------------------------------
# metrics: bench_metrics.py's children (kNN/PRDC and FID), on the device


def cmd_metrics(args: argparse.Namespace) -> int:
    import bench_metrics as bm

    work = Path(args.work)
    doc = JsonDoc(work / "metrics.json")
    argv = [
        "--sizes", *map(str, args.sizes), "--dim", str(args.dim), "--big", "0", "--device", args.device,
        "--repeats", str(args.repeats), "--out", str(work / "metrics.md"),
        "--skip-reference-above", str(args.reference_max_n),
        "--skip-fid-reference-above", str(args.fid_reference_max_n),
    ]  # fmt: skip
    bench_args = bm.parse_args(argv)
    doc.set("command", "bench_metrics.py " + " ".join(argv))
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    sizes: dict[str, Any] = {str(n): {} for n in args.sizes}
    outcomes: dict[int, dict[str, Any]] = {n: {} for n in args.sizes}
    # The targets' runs first (ours, every N), then the references: a timeout keeps what matters most.
    for n in args.sizes:
        log(f"metrics: ours, N={n}, d={args.dim}, device {args.device}")
        outcomes[n]["ours"] = bm.run_child("ours-prdc", n, bench_args)
        sizes[str(n)]["prdc"] = _measurement(outcomes[n]["ours"])
        doc.set("sizes", sizes)
    if args.big_budget_mb:
        n = max(args.sizes)
        log(f"metrics: ours, N={n}, --budget-mb {args.big_budget_mb}")
        big_args = bm.parse_args([*argv, "--budget-mb", str(args.big_budget_mb)])
        measured = _measurement(bm.run_child("ours-prdc", n, big_args))
        doc.set("large_budget", {"budget_mb": args.big_budget_mb, "n": n, **measured})
    for n in args.sizes:
        log(f"metrics: FID, N={n}")
        outcomes[n]["fid"] = bm.run_child("fid", n, bench_args)
        sizes[str(n)]["fid"] = _measurement(outcomes[n]["fid"])
        doc.set("sizes", sizes)
    for n in args.sizes:
        skip = bm.reference_skip_reason(n, bench_args)
        log(f"metrics: prdc.compute_prdc, N={n}{': ' + skip if skip else ''}")
        ref = bm.Outcome(reason=skip) if skip else bm.run_child("ref-prdc", n, bench_args)
        outcomes[n]["ref"] = ref
        entry = sizes[str(n)]
        entry["prdc_reference"] = _measurement(ref)
        ours = outcomes[n]["ours"]
        if ours.measurement is not None and ref.measurement is not None:
            entry["prdc_max_abs_diff"] = max(
                abs(ours.measurement.values[k] - ref.measurement.values[k]) for k in bm.PRDC_KEYS
            )
        doc.set("sizes", sizes)
    results = [bm.SizeResult(n, o["ours"], o["ref"], o["fid"]) for n, o in outcomes.items()]
    finished = datetime.datetime.now(datetime.timezone.utc)
    try:
        big = bm.Outcome(reason="not run separately (the largest N is among the sizes)")
        report = bm.render_report(bench_args, results, big, started, finished, load_before, os.getloadavg())
        (work / "metrics.md").write_text(report, encoding="utf-8")
    except Exception as exc:  # its machine section needs prdc / pytorch-fid / threadpoolctl metadata
        doc.set("report_error", _error(exc))
    failed = [n for n, e in sizes.items() if e["prdc"].get("time_s") is None]
    return 1 if failed and len(failed) == len(sizes) else 0


def _measurement(outcome: Any) -> dict[str, Any]:
    m = outcome.measurement
    if m is None:
        return {"time_s": None, "reason": outcome.reason}
    out: dict[str, Any] = {"time_s": m.time, "times_s": m.times, "values": m.values}
    out["peak_rss_mib"] = m.peak_maxrss / 2**20
    out["extra"] = {k: v for k, v in m.extra.items() if k != "notes"}
    if m.extra.get("notes"):
        out["notes"] = m.extra["notes"]
    return out


# --------------------------------------------------------------------------------------------------
# images: Inception and DINOv2 throughput from generated JPEG files


@functools.lru_cache(maxsize=2)
def _digits(side: int) -> Any:
    from helpers.digit_images import digit_pixels

    return digit_pixels(0, 1797, side=side)  # loaded once per worker process


def _write_one_jpeg(job: tuple[Path, int, int]) -> None:
    import numpy as np
    from PIL import Image

    path, index, side = job
    grey = _digits(side)[index % 1797]
    buffer = io.BytesIO()
    Image.fromarray(np.stack([grey, 255 - grey, grey // 2], axis=-1)).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue())


def write_jpegs(folder: Path, n: int, side: int) -> list[Path]:
    """bench_images.py's files: scikit-learn digits upscaled to ``side`` (a multiple of 8), RGB, q90."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"{i:05d}.jpg" for i in range(n)]
    jobs = [(path, i, side) for i, path in enumerate(files)]
    workers = max(1, min(16, os.cpu_count() or 1))
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_one_jpeg, jobs, chunksize=64))
    return files


def random_inception_state(seed: int) -> dict[str, Any]:
    """The FID Inception's tensors (our network's names and shapes, as the released file has them, less
    the unused classifier) with values that keep activations of order one: He-scaled convolutions,
    batch-norm statistics away from the identity (tests/helpers/pytorch_fid_reference.py's rules)."""
    import torch

    from auditor.extractors.networks.inception import FIDInceptionV3

    with torch.device("meta"):
        layout = {k: (tuple(v.shape), v.dtype) for k, v in FIDInceptionV3().state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    for key, (shape, dtype) in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=dtype)
        elif key.endswith(("running_var", "bn.weight")):
            state[key] = 0.5 + torch.rand(shape, generator=gen)
        elif key.endswith(("running_mean", "bias")):
            state[key] = 0.1 * torch.randn(shape, generator=gen)
        else:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
    return state


def install_generated_weights(directory: Path) -> dict[str, str]:
    """Writes both weights files under their released names and pins the extractors to them."""
    import torch
    from helpers.digit_images import spec_for_file, write_dinov2_weights

    from auditor.extractors.dinov2 import Dinov2VitB14Extractor
    from auditor.extractors.inception import InceptionV3FidExtractor
    from auditor.extractors.networks.dinov2 import DINOV2_VITB14, DINOV2_VITB14_WEIGHTS
    from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS

    directory.mkdir(parents=True, exist_ok=True)
    inception = directory / FID_INCEPTION_WEIGHTS.filename
    torch.save(random_inception_state(WEIGHTS_SEED), inception)
    dinov2 = write_dinov2_weights(directory, DINOV2_VITB14_WEIGHTS.filename, DINOV2_VITB14, WEIGHTS_SEED)
    os.environ["AUDITOR_WEIGHTS_DIR"] = str(directory)
    InceptionV3FidExtractor.weights = spec_for_file(FID_INCEPTION_WEIGHTS, inception)  # type: ignore[misc]
    Dinov2VitB14Extractor.weights = spec_for_file(DINOV2_VITB14_WEIGHTS, dinov2)  # type: ignore[misc]
    return {
        "inception": InceptionV3FidExtractor.weights.sha256,
        "dinov2-vitb14": Dinov2VitB14Extractor.weights.sha256,
    }


def cmd_images(args: argparse.Namespace) -> int:
    import torch

    from auditor.extractors.dinov2 import Dinov2VitB14Extractor
    from auditor.extractors.inception import InceptionV3FidExtractor
    from auditor.pipeline.progress import NullProgress
    from auditor.pipeline.spec import DatasetRef
    from auditor.pipeline.stages import load_reference

    work = Path(args.work) / "images"
    doc = JsonDoc(Path(args.work) / "images.json")
    device = torch.device(args.device)
    started = time.perf_counter()
    files = write_jpegs(work / "jpegs", args.n, args.side)
    warm_dir = work / "warm"
    warm_dir.mkdir(parents=True, exist_ok=True)
    for path in files[: args.batch_size]:
        shutil.copyfile(path, warm_dir / path.name)
    doc.set(
        "data", f"{args.n} JPEGs, {args.side}x{args.side}, quality 90 ({time.perf_counter() - started:.1f} s)"
    )
    doc.set("weights_sha256", install_generated_weights(work / "weights"))
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    doc.set("setup", {"batch_size": args.batch_size, "num_workers": workers, "device": str(device)})
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    runs: list[dict[str, Any]] = []
    features: dict[str, Any] = {}

    def record(entry: dict[str, Any]) -> None:
        runs.append(entry)
        doc.set("runs", runs)
        rate = entry.get("img_per_s")
        log(
            f"{entry['extractor']} {entry['path']}: "
            + (f"{rate:.1f} img/s" if rate else entry.get("error", ""))
        )

    def model_only(cls: type, options: dict[str, Any], size: int, label: str) -> None:
        entry: dict[str, Any] = {"extractor": cls.name, "path": label, "options": options}
        try:
            extractor = cls({"device": str(device), "batch_size": args.batch_size, **options})
            network = extractor.network()
            gen = torch.Generator().manual_seed(0)
            batch = torch.randint(0, 256, (args.batch_size, size, size, 3), dtype=torch.uint8, generator=gen)
            batch = batch.to(device).permute(0, 3, 1, 2)  # channels-last strides, as the loader gives
            batches = -(-args.n // args.batch_size)
            for _ in range(2):
                extractor.forward(network, batch)
            sync()
            start = time.perf_counter()
            for _ in range(batches):
                extractor.forward(network, batch)
            sync()
            seconds = time.perf_counter() - start
            entry.update(img_per_s=batches * args.batch_size / seconds, seconds=seconds)
        except Exception as exc:
            entry["error"] = _error(exc)
        record(entry)

    def end_to_end(cls: type, options: dict[str, Any], label: str, key: str) -> None:
        entry: dict[str, Any] = {"extractor": cls.name, "path": label, "options": options}
        try:
            extractor = cls(
                {"device": str(device), "batch_size": args.batch_size, "num_workers": workers, **options}
            )
            extractor.network()  # construction excluded (weights read, verified, moved)
            extractor.embed(load_reference("real", DatasetRef(uri=str(warm_dir))), NullProgress())
            sync()
            start = time.perf_counter()
            out = extractor.embed(load_reference("real", DatasetRef(uri=str(work / "jpegs"))), NullProgress())
            sync()
            seconds = time.perf_counter() - start
            if out.shape[0] != len(files):
                raise RuntimeError(f"expected {len(files)} rows, got {out.shape[0]}")
            entry.update(
                img_per_s=len(files) / seconds, seconds=seconds, finite=bool(torch.isfinite(out).all())
            )
            features[key] = out[: args.compare_n].clone()
        except Exception as exc:
            entry["error"] = _error(exc)
        record(entry)

    inception, dinov2 = InceptionV3FidExtractor, Dinov2VitB14Extractor
    model_only(inception, {}, args.side, "model only (fp32)")
    end_to_end(inception, {}, "end-to-end, Pillow decode (fp32)", "inception")
    if device.type == "cuda":
        end_to_end(inception, {"decoder": "nvjpeg"}, "end-to-end, nvjpeg decode (fp32)", "inception-nvjpeg")
    else:
        record({"extractor": inception.name, "path": "end-to-end, nvjpeg decode (fp32)", "error": "n/a: CPU"})
    model_only(dinov2, {}, 224, "model only (fp32)")
    model_only(dinov2, {"dtype": "bfloat16"}, 224, "model only (bf16 autocast)")
    end_to_end(dinov2, {}, "end-to-end, Pillow decode (fp32)", "dinov2")
    end_to_end(dinov2, {"dtype": "bfloat16"}, "end-to-end, Pillow decode (bf16 autocast)", "dinov2-bf16")

    # Feature agreement on the first images: the device against the CPU (fp32), nvjpeg against Pillow,
    # bf16 against fp32.
    agreement: dict[str, Any] = {}
    comparisons = [("inception-nvjpeg", "inception", "nvjpeg vs Pillow decode (Inception, same device)")]
    comparisons.append(("dinov2-bf16", "dinov2", "bf16 vs fp32 (DINOv2, same device)"))
    for key, ref_key, label in comparisons:
        if args.compare_n > 0 and key in features and ref_key in features:
            try:
                agreement[label] = _relative_max_diff(features[key], features[ref_key])
            except Exception as exc:
                agreement[label] = _error(exc)
    if device.type == "cuda" and args.compare_n > 0:
        subset = work / "compare"
        subset.mkdir(exist_ok=True)
        for path in files[: args.compare_n]:
            shutil.copyfile(path, subset / path.name)
        for cls, key in ((inception, "inception"), (dinov2, "dinov2")):
            if key not in features:
                continue
            try:
                cpu = cls({"device": "cpu", "batch_size": args.batch_size, "num_workers": 0})
                cpu_features = cpu.embed(load_reference("real", DatasetRef(uri=str(subset))), NullProgress())
                label = f"{args.device} vs CPU (fp32, {cls.name}; cuDNN TF32 as configured)"
                agreement[label] = _relative_max_diff(features[key], cpu_features)
            except Exception as exc:
                agreement[f"{args.device} vs CPU ({cls.name})"] = _error(exc)
    doc.set("agreement_first_n", args.compare_n)
    doc.set("agreement", agreement)
    return 0 if any("img_per_s" in r for r in runs) else 1


def _relative_max_diff(a: Any, b: Any) -> float:
    scale = float(b.abs().max())
    return float((a.float() - b.float()).abs().max()) / max(scale, 1e-30)


# --------------------------------------------------------------------------------------------------
# audit-data: the precomputed 50k-vs-50k feature files


def cmd_audit_data(args: argparse.Namespace) -> int:
    import numpy as np
    from bench_metrics import make_features

    work = Path(args.work)
    real, synthetic = make_features(args.n, args.dim, args.seed)
    np.save(work / "audit_real.npy", real)
    np.save(work / "audit_synthetic.npy", synthetic)
    log(f"wrote {args.n} x {args.dim} float32 real and synthetic features to {work}")
    return 0


# --------------------------------------------------------------------------------------------------
# report


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_sections(path: Path) -> list[dict[str, str]]:
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) >= 4:
                rows.append({"name": parts[0], "status": parts[1], "seconds": parts[2], "note": parts[3]})
    return rows


def junit_counts(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        return {"error": str(exc)}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    cases = []
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            outcome = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    outcome = child.tag
                elif child.tag == "skipped":
                    outcome = "skipped"
            cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome})
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "cases": cases}


def _verdict(ok: bool | None, indicative: bool) -> str:
    if ok is None:
        return "not measured"
    text = "**met**" if ok else "**not met**"
    return f"{text} (indicative only: smoke sizes / not the target device)" if indicative else text


def _fmt(value: Any, spec: str = ".3f", suffix: str = "") -> str:
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return f"{value:{spec}}{suffix}"
    return "—"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += [
        "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows
    ]
    return out


def cmd_report(args: argparse.Namespace) -> int:
    work = Path(args.work)
    env = read_json(work / "env.json")
    metrics = read_json(work / "metrics.json")
    images = read_json(work / "images.json")
    audit = read_json(work / "audit_result.json")
    audit_wall = read_json(work / "audit_wall.json")
    tests = junit_counts(work / "cuda_tests.xml")
    sections = read_sections(work / "sections.tsv")
    device = args.device
    indicative = args.smoke or device != "cuda"
    lines = [
        "# GPU check results" + (" (smoke run)" if args.smoke else ""),
        "",
        f"- generated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC by "
        f"`bench/gpu_check.sh{' --smoke' if args.smoke else ''}` (DEVICE={device}); work folder `{work}`",
    ]
    if args.smoke:
        lines.append(
            "- smoke mode: small sizes, figures prove the script runs, not the targets (which are "
            "evaluated, marked indicative)"
        )
    lines += ["", "## Machine", ""]
    smi = (
        (work / "nvidia-smi.txt").read_text(encoding="utf-8").strip()
        if (work / "nvidia-smi.txt").exists()
        else ""
    )
    lines.append(f"- nvidia-smi: {smi or 'not available'}")
    if env:
        lines.append(
            f"- torch {env.get('torch')} (CUDA build {env.get('torch_cuda_build')}, "
            f"cuDNN {env.get('cudnn', '—')}); "
            f"CUDA available: {env.get('cuda_available')}; device: {env.get('device_name', 'none')} "
            f"({env.get('device_memory_gib', '—')} GiB, capability {env.get('device_capability', '—')})"
        )
        lines.append(
            f"- torchvision {env.get('torchvision')}; nvjpeg: {env.get('nvjpeg', 'not checked')}; "
            f"TF32 matmul {env.get('tf32_matmul', '—')}, cuDNN TF32 {env.get('tf32_cudnn', '—')}"
        )
        lines.append(
            f"- Python {env.get('python')}; numpy {env.get('numpy')}; {env.get('cpus')} CPUs; "
            f"{env.get('platform')}"
        )
    else:
        lines.append("- (the env section did not run)")

    # Targets.
    lines += ["", "## Targets", ""]
    target_rows = []
    if tests.get("tests"):
        ok = tests["failures"] == 0 and tests["errors"] == 0 and tests["passed"] > 0
        figure = (
            f"{tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
            f"{tests['skipped']} skipped"
        )
        if device != "cuda" and tests["passed"] == 0 and tests["failures"] == tests["errors"] == 0:
            verdict = "skipped cleanly without a GPU (as designed)"
        else:
            verdict = _verdict(ok, False)
    else:
        figure, verdict = "no test report", "not measured"
    target_rows.append(
        ["CPU and CUDA give the same metrics (`pytest -m cuda`, stated tolerances)", figure, verdict]
    )

    sizes = metrics.get("sizes", {})
    big_n = max((int(n) for n in sizes), default=None)
    prdc_s = sizes.get(str(big_n), {}).get("prdc", {}).get("time_s") if big_n else None
    at_knn_target = big_n == KNN_TARGET_N and metrics_dim(metrics) == KNN_TARGET_DIM
    target_rows.append(
        [
            f"kNN family (graph + precision/recall/density/coverage) at N={KNN_TARGET_N:,}, "
            f"d={KNN_TARGET_DIM} on cuda < {KNN_TARGET_S:g} s",
            f"{_fmt(prdc_s, '.3f', ' s')} at N={big_n:,}" if prdc_s is not None and big_n else "—",
            _verdict(None if prdc_s is None else prdc_s < KNN_TARGET_S, indicative or not at_knn_target),
        ]
    )
    large = metrics.get("large_budget", {})
    if large.get("time_s") is not None:
        target_rows.append(
            [
                f"(for information) the same with --budget-mb {large.get('budget_mb')}",
                f"{large['time_s']:.3f} s at N={large.get('n'):,}",
                "",
            ]
        )
    diffs = {
        n: e.get("prdc_max_abs_diff") for n, e in sizes.items() if e.get("prdc_max_abs_diff") is not None
    }
    if diffs:
        worst = max(diffs.values())
        target_rows.append(
            [
                f"PRDC on the device equals prdc.compute_prdc (max abs diff <= {PRDC_EQUAL:g})",
                ", ".join(f"N={int(n):,}: {d:.1e}" for n, d in diffs.items()),
                _verdict(worst <= PRDC_EQUAL, False),
            ]
        )
    fid_rel = {}
    for n, e in sizes.items():
        values = e.get("fid", {}).get("values", {})
        if values.get("ref") is not None and not math.isnan(values.get("ref", math.nan)):
            fid_rel[n] = abs(values["ours"] - values["ref"]) / max(abs(values["ref"]), 1e-300)
    if fid_rel:
        target_rows.append(
            [
                f"FID on the device equals pytorch-fid's (relative <= {FID_REL:g})",
                ", ".join(f"N={int(n):,}: {r:.1e}" for n, r in fid_rel.items()),
                _verdict(max(fid_rel.values()) <= FID_REL, False),
            ]
        )
    audit_s = audit_wall.get("wall_s")
    audit_n = audit_wall.get("n")
    at_audit_target = audit_n == AUDIT_TARGET_N and audit_wall.get("dim") == AUDIT_TARGET_DIM
    target_rows.append(
        [
            f"{AUDIT_TARGET_N:,} vs {AUDIT_TARGET_N:,} precomputed audit (d={AUDIT_TARGET_DIM}), "
            f"`auditor audit --device cuda` end to end < {AUDIT_TARGET_S:g} s",
            (
                f"{audit_s:.1f} s wall (score {_fmt(audit.get('timings', {}).get('score_s'), '.1f', ' s')}) "
                f"at N={audit_n:,}, d={audit_wall.get('dim')}"
            )
            if audit_s is not None and audit_wall.get("rc") == 0
            else f"failed (exit {audit_wall.get('rc')})"
            if audit_wall
            else "—",
            _verdict(
                None if audit_s is None or audit_wall.get("rc") != 0 else audit_s < AUDIT_TARGET_S,
                indicative or not at_audit_target,
            ),
        ]
    )
    for row in image_target_rows(images, indicative):
        target_rows.append(row)
    lines += _table(["target", "figure", "verdict"], target_rows)

    # Sections.
    lines += ["", "## Sections", ""]
    lines += _table(
        ["section", "status", "seconds", "note"],
        [[s["name"], s["status"], s["seconds"], s["note"]] for s in sections],
    )
    total = sum(float(s["seconds"]) for s in sections if _is_number(s["seconds"]))
    lines += ["", f"Total section time: {total:.0f} s."]

    # Figures.
    if tests.get("cases"):
        lines += ["", "## CUDA tests", ""]
        lines += _table(["test", "outcome"], [[c["name"], c["outcome"]] for c in tests["cases"]])
    lines += ["", "## kNN / FID bench (bench_metrics.py children)", ""]
    if sizes:
        lines.append(f"`{metrics.get('command', '')}`")
        lines.append("")
        lines += _table(
            [
                "N",
                "kNN+PRDC s",
                "GPU peak MiB",
                "prdc (CPU) s",
                "max abs diff",
                "FID stats s",
                "FID distance s",
                "numpy stats s",
                "pytorch-fid distance s",
                "FID rel diff",
            ],
            [metrics_row(n, e) for n, e in sizes.items()],
        )
    else:
        lines.append("(not run)")
    report_md = work / "metrics.md"
    if report_md.exists():
        lines += ["", "<details><summary>bench_metrics.py report</summary>", ""]
        lines += [re.sub(r"^#", "###", line) for line in report_md.read_text(encoding="utf-8").splitlines()]
        lines += ["", "</details>"]
    lines += ["", "## Image embedding throughput", ""]
    if images.get("runs"):
        setup = images.get("setup", {})
        lines.append(
            f"{images.get('data', '')}; batch size {setup.get('batch_size')}, "
            f"{setup.get('num_workers')} loader workers, device {setup.get('device')}; "
            "generated random weights (SHA-256 pinned: "
            f"{', '.join(f'{k} {v[:12]}' for k, v in images.get('weights_sha256', {}).items())})"
        )
        lines.append("")
        lines += _table(
            ["extractor", "path", "img/s", "vs model only (fp32)", "note"],
            image_rows(images["runs"]),
        )
        agreement = images.get("agreement", {})
        if agreement:
            lines += ["", f"Feature agreement on the first {images.get('agreement_first_n')} images "
                      "(max |difference| / max |reference feature|):", ""]  # fmt: skip
            lines += [f"- {k}: {_fmt(v, '.2e') if isinstance(v, float) else v}" for k, v in agreement.items()]
    else:
        lines.append("(not run)")
    lines += ["", "## Audit", ""]
    if audit_wall:
        timings = audit.get("timings", {})
        lines.append(
            f"`{audit_wall.get('command', '')}`: exit {audit_wall.get('rc')}, "
            f"wall {_fmt(audit_s, '.1f', ' s')}; "
            f"document timings: load {_fmt(timings.get('load_s'), '.2f')} s, embed "
            f"{_fmt(timings.get('embed_s'), '.2f')} s, score {_fmt(timings.get('score_s'), '.2f')} s, total "
            f"{_fmt(timings.get('total_s'), '.2f')} s; device {audit.get('device', '—')}"
        )
        metric_values = audit.get("metrics", {})
        if metric_values:
            lines.append("")
            lines.append(
                "Values: "
                + ", ".join(
                    f"{k} {_fmt(v.get('value'), '.4g')}"
                    for k, v in metric_values.items()
                    if isinstance(v, dict)
                )
            )
    else:
        lines.append("(not run)")

    failures = [s for s in sections if s["status"] not in ("ok", "skipped")]
    if failures:
        lines += ["", "## Failures", ""]
        for s in failures:
            lines += [
                f"### {s['name']}: {s['status']} ({s['note']})",
                "",
                "```",
                _tail(work / "logs" / f"{s['name']}.log"),
                "```",
                "",
            ]
    lines += ["", f"Logs: `{work}/logs/` (one per section).", ""]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def metrics_dim(metrics: dict[str, Any]) -> int | None:
    match = re.search(r"--dim (\d+)", metrics.get("command", ""))
    return int(match.group(1)) if match else None


def metrics_row(n: str, entry: dict[str, Any]) -> list[str]:
    prdc, ref, fid = entry.get("prdc", {}), entry.get("prdc_reference", {}), entry.get("fid", {})
    fx = fid.get("extra", {})
    values = fid.get("values", {})
    rel = "—"
    if values.get("ref") is not None and not math.isnan(values["ref"]):
        rel = f"{abs(values['ours'] - values['ref']) / max(abs(values['ref']), 1e-300):.1e}"
    gpu_peak = prdc.get("extra", {}).get("gpu_peak_delta")
    return [
        f"{int(n):,}",
        _fmt(prdc.get("time_s")) if prdc.get("time_s") is not None else prdc.get("reason", "—"),
        _fmt(gpu_peak / 2**20 if gpu_peak is not None else None, ".0f"),
        _fmt(ref.get("time_s")) if ref.get("time_s") is not None else ref.get("reason", "—"),
        _fmt(entry.get("prdc_max_abs_diff"), ".1e"),
        _fmt(fx.get("ours_stats_s")) if fid.get("time_s") is not None else fid.get("reason", "—"),
        _fmt(fx.get("ours_distance_s")),
        _fmt(fx.get("ref_stats_s")),
        _fmt(fx.get("ref_distance_s")),
        rel,
    ]


def image_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    model = {r["extractor"]: r.get("img_per_s") for r in runs if r["path"] == "model only (fp32)"}
    rows = []
    for r in runs:
        rate = r.get("img_per_s")
        base = model.get(r["extractor"])
        share = f"{rate / base:.2f}" if rate and base else "—"
        note = r.get("error", "")
        if r.get("finite") is False:
            note = (note + "; " if note else "") + "non-finite features"
        rows.append([r["extractor"], r["path"], _fmt(rate, ".1f"), share, note])
    return rows


def image_target_rows(images: dict[str, Any], indicative: bool) -> list[list[str]]:
    runs = images.get("runs", [])
    model = {r["extractor"]: r.get("img_per_s") for r in runs if r["path"] == "model only (fp32)"}
    rows = []
    for r in runs:
        if not r["path"].startswith("end-to-end") or "(fp32)" not in r["path"]:
            continue
        rate, base = r.get("img_per_s"), model.get(r["extractor"])
        if not rate or not base:
            continue
        share = rate / base
        rows.append(
            [
                f"(proposed, no target was set) {r['extractor']} {r['path']}: >= {E2E_SHARE_PROPOSED:g} of "
                "the model-only rate",
                f"{rate:.0f} img/s = {share:.2f} of {base:.0f}",
                _verdict(share >= E2E_SHARE_PROPOSED, indicative),
            ]
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name)
        p.add_argument("--work", required=True)
        p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
        p.set_defaults(fn=fn)
        return p

    add("env", cmd_env)
    p = add("metrics", cmd_metrics)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--reference-max-n", type=int, default=10_000, help="prdc.compute_prdc up to this N")
    p.add_argument("--fid-reference-max-n", type=int, default=10_000, help="pytorch-fid up to this N")
    p.add_argument("--big-budget-mb", type=int, default=0, help="also time the largest N with this budget")
    p = add("images", cmd_images)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--compare-n", type=int, default=32, help="images for the CPU-vs-device feature check")
    p = add("audit-data", cmd_audit_data)
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p = add("report", cmd_report)
    p.add_argument("--out", required=True)
    p.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
