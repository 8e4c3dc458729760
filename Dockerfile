# syntax=docker/dockerfile:1
#
# One image for every process of the service: the API (`auditor serve`, the default command), the Celery
# workers (`auditor worker ...`), migrations (`auditor db upgrade`) and Flower.
#
# CPU build (default; the API, the CPU worker, migrations):
#   docker build -t synthetic-data-auditor:latest .
#
# GPU build (the GPU worker): same Dockerfile, the CUDA build of the same torch. The CUDA wheels bundle the
# CUDA runtime, cuDNN and cuBLAS; the host (NVIDIA Container Toolkit / the k8s device plugin) injects only
# the driver, so a slim Python base works. Pick the wheel index that matches the hosts' driver:
#   docker build -t synthetic-data-auditor:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#     --build-arg EXTRAS=service,postgres,gpu .
# BASE_IMAGE may name any image with Python 3.11 (e.g. a hardened or internal-mirror python:3.11 image), or a
# plain Debian bookworm image without Python: then both stages install Debian's python3.11 (the builder also
# python3.11-venv) with apt-get. Both stages use the same base so the virtual environment's interpreter
# (/usr/local/bin/python3.11 in python:3.11, /usr/bin/python3.11 in Debian) exists at run time.
#   docker build --build-arg BASE_IMAGE=debian:bookworm-slim -t synthetic-data-auditor:latest .
# (deploy/smoke.sh builds from a local debootstrap image this way.)
#
# Optional extras (comma-separated in EXTRAS): text, remote, s3, gcs, gpu. Other distributions: EXTRA_PACKAGES
# (space-separated requirement specifiers; docker-compose.yml builds its Flower image with "flower>=2").

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=service,postgres
# More distributions to install beside the package, e.g. "flower>=2" for the Flower image.
ARG EXTRA_PACKAGES=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# Python from the distribution when the base has none (Debian bookworm's python3.11); a no-op on python:3.11.
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            python3.11 python3.11-venv ca-certificates \
     && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi

RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, pinned, from the selected index: its own layer (the heaviest, rarely changes). Installing it
# before the project keeps pip from resolving the unpinned `torch>=2.3` to a multi-GB CUDA build on PyPI.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}" \
 && echo "torch==${TORCH_VERSION}" > /opt/torch-constraint.txt

# Only what the package build needs (see .dockerignore): metadata, README (pyproject's readme), packages.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY auditor ./auditor
COPY workers ./workers
COPY migrations ./migrations

# The constraint keeps the torch installed above; the extra index lets extras that depend on torch builds
# (torchvision, in `gpu`) resolve to the variant matching it (+cpu / +cuXXX) rather than PyPI's.
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" -c /opt/torch-constraint.txt \
        ".[${EXTRAS}]" ${EXTRA_PACKAGES} \
 && python -c "import torch, auditor; print('torch', torch.__version__)" \
 && rm -rf /src /root/.cache

# Not needed at run time (~0.3 GB of the image): torch's C++ test binaries and protoc (torch/bin keeps
# torch_shm_manager, which DataLoader workers use), and the packages' own test suites.
RUN site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
 && rm -rf "$site/torch/test" \
 && find "$site/torch/bin" -mindepth 1 -maxdepth 1 ! -name torch_shm_manager -exec rm -rf {} + \
 && find "$site" -depth -type d -name tests -path "$site/*/tests" -exec rm -rf {} + \
 && python -c "import torch, numpy, scipy.stats, sklearn.neighbors, pandas, pyarrow, auditor.cli.main, workers.celery_app"

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ARG UID=10001
ARG GID=10001

LABEL org.opencontainers.image.title="synthetic-data-auditor" \
      org.opencontainers.image.description="Synthetic-data quality auditing service (API + Celery workers)" \
      org.opencontainers.image.licenses="Apache-2.0"

# Non-root user; fixed ids so k8s runAsUser/fsGroup and volume ownership can refer to them.
# /var/lib/auditor is AUDITOR_HOME; /srv/auditor/artifacts is pre-created and owned by the user so that a
# fresh named Docker volume mounted there inherits that ownership. The mount points (artifacts, weights,
# /data) match AUDITOR_ARTIFACT_ROOT, AUDITOR_WEIGHTS_DIR and AUDITOR_DATA_ROOTS as docker-compose.yml and
# deploy/k8s set them; the image itself sets no service configuration. Caches go to /tmp (writable even
# with a read-only root filesystem, as an emptyDir in Kubernetes).
# Python from the distribution when the base has none (see the builder stage); no venv module needed here.
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
     && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3.11 ca-certificates \
     && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb; \
    fi \
 && groupadd --system --gid "${GID}" auditor \
 && useradd --system --uid "${UID}" --gid auditor --home-dir /home/auditor --create-home \
        --shell /usr/sbin/nologin auditor \
 && mkdir -p /var/lib/auditor /srv/auditor/artifacts /srv/auditor/weights /data \
 && chown -R auditor:auditor /var/lib/auditor /srv/auditor/artifacts

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOME=/home/auditor \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRITON_CACHE_DIR=/tmp/.cache/triton \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    AUDITOR_HOME=/var/lib/auditor

USER auditor:auditor
WORKDIR /home/auditor

EXPOSE 8000

# For the API (the default command). Worker and migration containers disable it (compose: `healthcheck:
# disable: true`; Kubernetes ignores HEALTHCHECK and uses the probes in deploy/k8s). No curl in the slim
# image: the standard library does the request; any HTTP error or refused connection exits non-zero.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["auditor", "serve", "--host", "0.0.0.0", "--port", "8000"]
