#!/usr/bin/env bash
# Wheels for bench/gpu_check.sh on a GPU machine that reaches no package index but whose python3 already
# has a CUDA torch and most of the scientific stack (this workplace's lent GPU machines: Python 3.12,
# torch + torchvision, numpy, scipy, scikit-learn, pandas, pyarrow, Pillow, pytest, hypothesis, typer,
# rich, PyYAML, click, h11, setuptools). Fetches, here where pip reaches the index, the rest of what the
# project and the checks import, for that Python and platform, without dependencies (named one by one):
#
#   bench/gpu_wheelhouse.sh [DIR (default .whl)] [PYTHON_VERSION (default 3.12)]
#
# Then, on the GPU machine: GPU_CHECK_WHEELHOUSE=DIR bench/gpu_check.sh (the venv sees the system
# packages; pip installs the project and these wheels with --no-index --find-links DIR).
set -euo pipefail
DIR=${1:-.whl}
PYVER=${2:-3.12}
PY=${PYTHON:-python3}
mkdir -p "$DIR"
PLATFORMS=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$tag")
done
fetch() {
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
        "${PLATFORMS[@]}" -d "$DIR" "$@"
}
# The project's dependencies that image lacks, their own, and what the tests and benches import.
fetch sqlalchemy greenlet alembic mako pydantic-settings python-dotenv typing-inspection annotated-types \
    prdc==0.2 pytorch-fid==0.3.0 redis uvicorn pytest-timeout
# pydantic pins its core exactly: take the pair.
fetch pydantic
core=$(unzip -p "$DIR"/pydantic-[0-9]*.whl '*/METADATA' | sed -n 's/^Requires-Dist: pydantic-core==\([0-9.]*\).*/\1/p')
fetch "pydantic-core==$core"
ls -la "$DIR"
du -sh "$DIR"
