#!/usr/bin/env bash
# `make gpu-check`: the GPU acceptance check (bench/gpu_check.py) on a lent GPU machine, which has PyTorch,
# transformers and nvidia-ml-py but no .venv, no Docker and no internet. What its Python lacks of lem's own needs is
# installed from wheels carried in .wheels-gpu/ (made on a machine with a registry by `bash bench/gpu_check.sh
# wheels`). Figures land under $OUT (else bench/results).
#
#   bash bench/gpu_check.sh [gpu_check.py options]      run the check
#   bash bench/gpu_check.sh wheels                      download the wheels it needs into .wheels-gpu/ (cp312)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${LEM_GPU_WHEELS:-.wheels-gpu}
# lem's imports the GPU machine's image does not hold (KINDS.md's package list), pinned to this venv's versions
CARRIED=(pydantic pydantic-core annotated-types typing-inspection docker)

if [ "${1:-}" = wheels ]; then
  py=${PYTHON:-.venv/bin/python}
  specs=$("$py" -c "import importlib.metadata as m, sys; print(' '.join(f'{n}=={m.version(n)}' for n in sys.argv[1:]))" "${CARRIED[@]}")
  # shellcheck disable=SC2086
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d "$WHEELS" $specs
  ls "$WHEELS"
  exit 0
fi

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
missing() {
  "$PY" -c "import importlib.util as u, sys; print(' '.join(n for n in sys.argv[1:] if u.find_spec(n) is None))" \
    pydantic yaml typer rich pyarrow pandas scipy aiohttp pynvml docker torch transformers pytest
}
lack=$(missing)
if [ -n "$lack" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/lem-site \
    "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/lem-site${PYTHONPATH:+:$PYTHONPATH}
  lack=$(missing)
fi
if [ -n "$lack" ]; then
  echo "gpu-check: this Python ($PY) lacks: $lack; carry them as wheels (bash bench/gpu_check.sh wheels, then carry $WHEELS)" >&2
  exit 2
fi
export PYTHONPATH=$PWD/controller:$PWD/runners:$PWD/tests${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
exec "$PY" bench/gpu_check.py "$@"
