#!/usr/bin/env bash
# The GPU proof in one command, on a bare GPU machine, in under 8 minutes with the install:
#
#   bench/gpu_check.sh                  writes bench/RESULTS_gpu.md
#   DEVICE=cpu GPU_CHECK_VENV=/work/main/.venv bench/gpu_check.sh --smoke
#                                       every section at small sizes on a CPU, reusing a venv (no
#                                       installs); the results go under /tmp, never to RESULTS_gpu.md
#
# Sections, each under its own `timeout`, in order: machine (nvidia-smi), venv, torch (a CUDA build from
# the package index, skipped where the interpreter already has one), project (pip install -e '.[dev]',
# falling back to the minimal set the checks need), env (versions), tests (pytest -m cuda: CPU vs CUDA),
# metrics (bench_metrics.py's kNN/FID children at N=10k and 50k, d=2048), audit-data + audit (`auditor
# audit` of 50k vs 50k precomputed 2048-d features), images (Inception and DINOv2 throughput from
# generated JPEGs), then the report. A section that fails or times out is recorded and the next one
# runs. Each section's limit is min(its cap, what is left of the total budget once the minimum of every
# later section is set aside), so the whole run stays inside GPU_CHECK_BUDGET_S however slow the
# install is. Exit 0 with the summary, unless no measuring section succeeded (exit 1).
#
# Environment (all optional):
#   DEVICE=cuda|cpu            where the measurements run (default cuda)
#   GPU_CHECK_VENV=DIR         use this existing environment: no venv, torch or project install
#   GPU_CHECK_PYTHON=python3   the interpreter that makes the venv (and writes the report)
#   GPU_CHECK_WORK=DIR         work folder: logs, JSON, generated data (default /tmp/gpu_check-<UTC time>)
#   GPU_CHECK_RESULTS=FILE     results file (default bench/RESULTS_gpu.md; smoke: WORK/RESULTS_gpu_smoke.md)
#   GPU_CHECK_BUDGET_S=N       total seconds for the sections before the report (default 420, so that the
#                              whole run stays under 8 minutes; 540 fits a 10-minute command; smoke 900)
#   GPU_CHECK_TORCH_SPEC=...   what to install for torch (default "torch torchvision": the index's default
#                              CUDA build and its torchvision, which brings nvjpeg)
#   GPU_CHECK_WHEELHOUSE=DIR   wheels to install from when no package index can be reached
#   GPU_CHECK_COPY_TO=DIR      also copy the results file and a tarball of the logs there (e.g. $OUT)

# shellcheck disable=SC2317 # the section functions run through `bash -c NAME`, which shellcheck cannot see
set -u -o pipefail

SMOKE=0
for arg in "$@"; do
    case "$arg" in
        --smoke) SMOKE=1 ;;
        -h | --help)
            sed -n '2,/^set -u/p' "$0" | sed '$d' | grep -v '^# shellcheck' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "gpu_check.sh: unknown argument $arg (use --smoke or --help)" >&2
            exit 2
            ;;
    esac
done

REPO=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
DEVICE=${DEVICE:-cuda}
if [[ "$DEVICE" != "cuda" && "$DEVICE" != "cpu" ]]; then
    echo "gpu_check.sh: DEVICE must be cuda or cpu, got $DEVICE" >&2
    exit 2
fi
PY_BASE=${GPU_CHECK_PYTHON:-python3}
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$WORK/logs"
WORK=$(cd "$WORK" && pwd)
if ((SMOKE)); then
    RESULTS=${GPU_CHECK_RESULTS:-$WORK/RESULTS_gpu_smoke.md}
    BUDGET=${GPU_CHECK_BUDGET_S:-900}
else
    RESULTS=${GPU_CHECK_RESULTS:-$REPO/bench/RESULTS_gpu.md}
    BUDGET=${GPU_CHECK_BUDGET_S:-420} # + the report (< 1 s; 2 x 20 s at most) + kill grace: < 8 min
fi
mkdir -p "$(dirname -- "$RESULTS")"
RESULTS="$(cd "$(dirname -- "$RESULTS")" && pwd)/$(basename -- "$RESULTS")"
if ((SMOKE)) && [[ "$RESULTS" == "$REPO/bench/RESULTS_gpu.md" ]]; then
    echo "gpu_check.sh: a smoke run does not write bench/RESULTS_gpu.md; set GPU_CHECK_RESULTS elsewhere" >&2
    exit 2
fi
TORCH_SPEC=${GPU_CHECK_TORCH_SPEC:-torch torchvision}
WHEELHOUSE=${GPU_CHECK_WHEELHOUSE:-}
SECTIONS="$WORK/sections.tsv"
: >"$SECTIONS"
START=$(date +%s)

# Sizes: the targets' on a GPU; small enough for a busy 2-core CPU in smoke mode.
if ((SMOKE)); then
    METRICS_ARGS=(--sizes 500 1000 --dim 128 --reference-max-n 1000 --fid-reference-max-n 500 --big-budget-mb 256)
    IMAGES_ARGS=(--n 32 --side 64 --batch-size 16 --workers 2 --compare-n 0)
    AUDIT_N=1000 AUDIT_DIM=128
else
    METRICS_ARGS=(--sizes 10000 50000 --dim 2048 --reference-max-n 10000 --fid-reference-max-n 10000 --big-budget-mb 4096)
    IMAGES_ARGS=(--n 2000 --side 256 --batch-size 200 --compare-n 32)
    AUDIT_N=50000 AUDIT_DIM=2048
fi

# name: cap and minimum, in seconds (the minimum is what an earlier section must leave for this one).
# The images last: the kNN and audit targets come first when the install leaves little time.
ORDER=(machine venv torch project env tests metrics audit-data audit images)
declare -A CAP MIN
if ((SMOKE)); then
    CAP=([machine]=15 [venv]=60 [torch]=300 [project]=600 [env]=60 [tests]=180 [metrics]=300 [images]=300 [audit-data]=60 [audit]=240)
    MIN=([machine]=5 [venv]=5 [torch]=5 [project]=5 [env]=10 [tests]=30 [metrics]=60 [images]=60 [audit-data]=10 [audit]=60)
else
    CAP=([machine]=15 [venv]=40 [torch]=200 [project]=150 [env]=30 [tests]=60 [metrics]=90 [audit-data]=20 [audit]=75 [images]=75)
    MIN=([machine]=5 [venv]=10 [torch]=30 [project]=20 [env]=10 [tests]=20 [metrics]=40 [audit-data]=10 [audit]=40 [images]=20)
fi

seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
export -f seconds_between

say() { echo "[gpu_check $(($(date +%s) - START))s] $*" >&2; }

record() { # name status seconds note
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >>"$SECTIONS"
    say "$1: $2 (${3}s)${4:+ - $4}"
}

reserve_after() { # the minimum of every section after $1
    local name=$1 seen=0 sum=0 s
    for s in "${ORDER[@]}"; do
        if ((seen)); then sum=$((sum + MIN[$s])); fi
        [[ "$s" == "$name" ]] && seen=1
    done
    echo "$sum"
}

# run_section NAME FUNCTION: FUNCTION runs under `timeout` in a child bash, its output in logs/NAME.log;
# it may write a one-line note to $NOTE_FILE. Returns the function's exit status (124: timed out).
run_section() {
    local name=$1 fn=$2
    local elapsed=$(($(date +%s) - START))
    local left=$((BUDGET - elapsed - $(reserve_after "$name")))
    local limit=$((CAP[$name] < left ? CAP[$name] : left))
    if ((limit < MIN[$name])); then
        record "$name" skipped 0 "no time left (${elapsed}s of the ${BUDGET}s budget used)"
        return 99
    fi
    export NOTE_FILE="$WORK/logs/$name.note" SECTION_LIMIT=$limit
    rm -f "$NOTE_FILE"
    local t0 t1 rc status note
    t0=$(date +%s.%N)
    say "$name: starting (limit ${limit}s)"
    timeout -k 5 "$limit" bash -c "$fn" >"$WORK/logs/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    note=$(cat "$NOTE_FILE" 2>/dev/null || true)
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout note="killed at its ${limit}s limit${note:+; $note}" ;;
        *) status=failed note="exit $rc${note:+; $note}" ;;
    esac
    record "$name" "$status" "$(seconds_between "$t0" "$t1")" "$note"
    return "$rc"
}

note() { echo "$*" >>"$NOTE_FILE"; }

PIP_FLAGS=(--disable-pip-version-check --no-input --progress-bar off --no-compile --prefer-binary --timeout 20 --retries 2)
# What the checks need beyond the project's own dependencies (tests/conftest.py imports redis and uvicorn).
MIN_REQS=("pytest>=8" "pytest-timeout>=2.2" "hypothesis>=6.90" "scipy<1.18" "pytorch-fid==0.3.0" "prdc==0.2" redis uvicorn)
# From a wheelhouse (bench/gpu_wheelhouse.sh), beside an interpreter that has pytest, hypothesis and scipy.
MIN_REQS_OFFLINE=(pytest-timeout "pytorch-fid==0.3.0" "prdc==0.2" redis uvicorn)

export REPO DEVICE WORK PY_BASE TORCH_SPEC WHEELHOUSE SMOKE AUDIT_N AUDIT_DIM
export PIP_FLAGS_STR="${PIP_FLAGS[*]}" MIN_REQS_STR="${MIN_REQS[*]}" MIN_REQS_OFFLINE_STR="${MIN_REQS_OFFLINE[*]}"
export -f note

# --- machine --------------------------------------------------------------------------------------
s_machine() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi
        local cuda
        cuda=$(nvidia-smi | grep -o 'CUDA Version: [0-9.]*' | head -1)
        echo "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)${cuda:+, $cuda}" \
            >"$WORK/nvidia-smi.txt"
        note "$(cat "$WORK/nvidia-smi.txt")"
    else
        echo "nvidia-smi not found" | tee "$WORK/nvidia-smi.txt"
        note "nvidia-smi not found"
        [[ "$DEVICE" == "cpu" ]] || return 1
    fi
}
export -f s_machine

# --- venv: --system-site-packages, so that an interpreter that already has a CUDA torch lends it --------
s_venv() {
    local venv="$WORK/venv"
    if "$PY_BASE" -m venv --system-site-packages "$venv"; then
        note "venv at $venv (system site-packages visible)"
    elif PIP_BREAK_SYSTEM_PACKAGES=1 "$PY_BASE" -m pip install --quiet --user virtualenv &&
        "$PY_BASE" -m virtualenv --system-site-packages "$venv"; then
        note "virtualenv at $venv (the venv module failed)"
    else
        note "no venv could be made: using $PY_BASE itself"
        echo "$PY_BASE" >"$WORK/python"
        return 1
    fi
    echo "$venv/bin/python" >"$WORK/python"
    # Is a package index reachable? (decides between index installs and GPU_CHECK_WHEELHOUSE)
    if timeout 25 "$venv/bin/python" -m pip download --no-deps --no-cache-dir --quiet --dest "$WORK/probe" \
        --timeout 8 --retries 0 pip; then
        echo online >"$WORK/registry"
    else
        echo offline >"$WORK/registry"
        note "no package index reachable"
    fi
}
export -f s_venv

py() { "$(cat "$WORK/python")" "$@"; }
pip_install() {
    local extra=()
    [[ "$(cat "$WORK/python")" == "$PY_BASE" ]] && export PIP_BREAK_SYSTEM_PACKAGES=1
    if [[ "$(cat "$WORK/registry" 2>/dev/null)" != online ]]; then
        [[ -n "$WHEELHOUSE" ]] || { echo "no package index and no GPU_CHECK_WHEELHOUSE" >&2; return 1; }
        extra=(--no-index --find-links "$WHEELHOUSE" --no-build-isolation)
    fi
    # shellcheck disable=SC2086
    py -m pip install $PIP_FLAGS_STR "${extra[@]}" "$@"
}
export -f py pip_install

# --- torch: a CUDA build, unless the interpreter has one -------------------------------------------------
s_torch() {
    local check='import sys, torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() or sys.argv[1] == "cpu" else 1)'
    if py -c "$check" "$DEVICE"; then
        note "already there: torch $(py -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
        return 0
    fi
    # shellcheck disable=SC2086
    pip_install $TORCH_SPEC || { note "pip install $TORCH_SPEC failed"; return 1; }
    if py -c "$check" "$DEVICE"; then
        note "installed: torch $(py -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)')"
    else
        note "torch installed but sees no CUDA device (its CUDA build vs the driver? see nvidia-smi)"
        return 1
    fi
}
export -f s_torch

# --- project: -e '.[dev]', else the minimal set --------------------------------------------------------
s_project() {
    local budget=$((SECTION_LIMIT - 10)) rc
    if [[ "$(cat "$WORK/registry" 2>/dev/null)" == online ]]; then
        # shellcheck disable=SC2016 # expanded by the child bash
        timeout $((budget * 2 / 3)) bash -c 'pip_install -e "$REPO[dev]"'
        rc=$?
        if ((rc == 0)); then
            note "pip install -e .[dev]"
        else
            note "optional: pip install -e .[dev] failed (exit $rc); falling back to the minimal set"
            # shellcheck disable=SC2086
            pip_install -e "$REPO" $MIN_REQS_STR || { note "minimal install failed too"; return 1; }
            note "minimal set installed"
        fi
    elif [[ -n "$WHEELHOUSE" ]]; then
        # shellcheck disable=SC2086
        pip_install -e "$REPO" $MIN_REQS_OFFLINE_STR || { note "install from $WHEELHOUSE failed"; return 1; }
        note "installed from the wheelhouse $WHEELHOUSE"
    else
        # shellcheck disable=SC2086
        py -m pip install $PIP_FLAGS_STR --no-index --no-deps --no-build-isolation -e "$REPO" ||
            note "editable install failed: using PYTHONPATH"
    fi
    local missing
    missing=$(py - <<'PY'
import importlib.util
names = ["auditor", "numpy", "torch", "sqlalchemy", "pydantic_settings", "typer", "sklearn", "PIL", "pytest",
         "hypothesis", "scipy", "prdc", "pytorch_fid", "threadpoolctl", "redis", "uvicorn"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
PY
    )
    [[ -z "$missing" ]] || note "missing modules: $missing (the sections that need them will fail)"
}
export -f s_project

# --- env, tests, metrics, images, audit ------------------------------------------------------------------
s_env() { py "$REPO/bench/bench_gpu.py" env --work "$WORK" --device "$DEVICE"; }
s_tests() {
    cd "$REPO" || return 1
    local files extra=()
    files=$(grep -rl --include='*.py' -e 'pytest.mark.cuda' tests | sort | tr '\n' ' ')
    [[ -n "$files" ]] || { note "no test marked cuda"; return 1; }
    if ! py -c 'import redis, uvicorn, sqlalchemy' 2>/dev/null; then
        extra=(--noconftest -p _gpu_check_pytest)
        export PYTHONPATH="$REPO/bench:$REPO/tests${PYTHONPATH:+:$PYTHONPATH}"
        note "tests/conftest.py's imports missing: --noconftest with bench/_gpu_check_pytest.py"
    fi
    # shellcheck disable=SC2086
    py -m pytest -m cuda -v -p no:cacheprovider --junitxml="$WORK/cuda_tests.xml" "${extra[@]}" $files
    local rc=$?
    note "$(grep -E '^=+ .* in [0-9.]+s' "$WORK/logs/tests.log" | tail -1 | tr -d '=' | xargs)"
    return "$rc"
}
s_metrics() { py "$REPO/bench/bench_gpu.py" metrics --work "$WORK" --device "$DEVICE" "${METRICS_ARGS[@]}"; }
s_images() { py "$REPO/bench/bench_gpu.py" images --work "$WORK" --device "$DEVICE" "${IMAGES_ARGS[@]}"; }
s_audit_data() { py "$REPO/bench/bench_gpu.py" audit-data --work "$WORK" --n "$AUDIT_N" --dim "$AUDIT_DIM"; }
s_audit() {
    local cli=("$(dirname "$(cat "$WORK/python")")/auditor")
    [[ -x "${cli[0]}" ]] || cli=("$(cat "$WORK/python")" -c 'import sys; from auditor.cli.main import app; sys.argv[0] = "auditor"; app()')
    local args=(audit --real "$WORK/audit_real.npy" --synthetic "$WORK/audit_synthetic.npy" --device "$DEVICE"
        --json "$WORK/audit_result.json" --no-store)
    local command="auditor ${args[*]}"
    printf '{"command": "%s", "rc": null, "n": %d, "dim": %d}\n' "$command" "$AUDIT_N" "$AUDIT_DIM" >"$WORK/audit_wall.json"
    local t0 t1 rc
    t0=$(date +%s.%N)
    AUDITOR_HOME="$WORK/auditor_home" "${cli[@]}" "${args[@]}"
    rc=$?
    t1=$(date +%s.%N)
    printf '{"command": "%s", "rc": %d, "wall_s": %s, "n": %d, "dim": %d}\n' "$command" "$rc" \
        "$(seconds_between "$t0" "$t1")" "$AUDIT_N" "$AUDIT_DIM" >"$WORK/audit_wall.json"
    note "wall $(seconds_between "$t0" "$t1") s"
    return "$rc"
}
export METRICS_ARGS_STR="${METRICS_ARGS[*]}" IMAGES_ARGS_STR="${IMAGES_ARGS[*]}"
export -f s_env s_tests s_audit_data s_audit
# Arrays do not cross `bash -c`: these two re-split their exported strings.
s_metrics_child() { read -ra METRICS_ARGS <<<"$METRICS_ARGS_STR" && s_metrics; }
s_images_child() { read -ra IMAGES_ARGS <<<"$IMAGES_ARGS_STR" && s_images; }
export -f s_metrics s_images s_metrics_child s_images_child

# --- run -------------------------------------------------------------------------------------------------
say "work folder $WORK; results $RESULTS; device $DEVICE; budget ${BUDGET}s$( ((SMOKE)) && echo '; smoke')"
cd "$REPO" || exit 1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

run_section machine s_machine
if [[ -n "${GPU_CHECK_VENV:-}" ]]; then
    echo "$GPU_CHECK_VENV/bin/python" >"$WORK/python"
    for s in venv torch project; do record "$s" skipped 0 "GPU_CHECK_VENV=$GPU_CHECK_VENV: no install"; done
else
    run_section venv s_venv || [[ -s "$WORK/python" ]] || echo "$PY_BASE" >"$WORK/python"
    run_section torch s_torch
    run_section project s_project
fi
run_section env s_env
run_section tests s_tests
measured=$?
run_section metrics s_metrics_child
rc=$?
((rc == 0)) && measured=0
if run_section audit-data s_audit_data; then
    run_section audit s_audit
    rc=$?
    ((rc == 0)) && measured=0
else
    record audit skipped 0 "no feature files (audit-data did not finish)"
fi
rm -f "$WORK"/audit_*.npy # 800 MB at the target size
run_section images s_images_child
rc=$?
((rc == 0)) && measured=0

say "report -> $RESULTS"
report_args=(report --work "$WORK" --out "$RESULTS" --device "$DEVICE")
((SMOKE)) && report_args+=(--smoke)
if ! timeout 20 "$PY_BASE" "$REPO/bench/bench_gpu.py" "${report_args[@]}" >"$WORK/logs/report.log" 2>&1; then
    # The report needs only the standard library; try the environment's interpreter before giving up.
    timeout 20 "$(cat "$WORK/python")" "$REPO/bench/bench_gpu.py" "${report_args[@]}" >"$WORK/logs/report.log" 2>&1 ||
        say "the report failed: $WORK/logs/report.log"
fi
if [[ -n "${GPU_CHECK_COPY_TO:-}" ]]; then
    mkdir -p "$GPU_CHECK_COPY_TO"
    cp -f "$RESULTS" "$GPU_CHECK_COPY_TO/" 2>/dev/null
    # shellcheck disable=SC2046 # file names made by this script: no spaces
    tar -czf "$GPU_CHECK_COPY_TO/gpu_check_logs.tar.gz" -C "$WORK" logs sections.tsv \
        $(cd "$WORK" && ls ./*.json ./*.xml ./*.md ./*.txt 2>/dev/null) 2>/dev/null
fi

echo
echo "== gpu_check summary ($(($(date +%s) - START)) s) =="
column -t -s $'\t' "$SECTIONS" 2>/dev/null || cat "$SECTIONS"
if [[ -f "$RESULTS" ]]; then
    echo
    sed -n '/^## Targets/,/^## Sections/p' "$RESULTS" | sed '$d'
    echo "results: $RESULTS"
fi
if ((measured != 0)); then
    echo "gpu_check: no measuring section succeeded" >&2
    exit 1
fi
exit 0
