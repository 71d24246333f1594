#!/usr/bin/env bash
# Build the one-folder desktop bundle dist/LabelAuditor/ (executables `auditor` and `label-auditor-engine`)
# with PyInstaller, from a build environment holding the CPU-only torch, so the bundle carries no CUDA
# libraries. Prints the build time and the bundle's size. Then run packaging/pyinstaller_smoke.sh.
#
#   bash packaging/build_bundle.sh
#
# BUILD_VENV     the build environment (made on first use; default build/bundle-venv)
# TORCH_CPU      pip arguments that install a CPU-only torch and its torchvision. The default is the CPU
#                build this machine keeps on disk; elsewhere use PyTorch's CPU wheel index, e.g.
#                TORCH_CPU="torch torchvision --index-url <PyTorch's CPU index>"
# PYTHON         the interpreter that makes the build environment (default python3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
BUILD_VENV="${BUILD_VENV:-$ROOT/build/bundle-venv}"
TORCH_CPU="${TORCH_CPU:-torch==2.13.0+cpu torchvision==0.28.0}"
PYTHON="${PYTHON:-python3}"

if [ ! -f "$BUILD_VENV/.ready" ]; then
    echo "== making the build environment $BUILD_VENV"
    "$PYTHON" -m venv "$BUILD_VENV"
    # torch first, the CPU build, so the project's own install keeps it.
    # shellcheck disable=SC2086 - TORCH_CPU is a list of pip arguments
    "$BUILD_VENV/bin/python" -m pip install -q $TORCH_CPU
    "$BUILD_VENV/bin/python" -m pip install -q "$ROOT[package]"
    touch "$BUILD_VENV/.ready"
fi
if "$BUILD_VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "the build environment holds CUDA libraries (nvidia-*): the bundle would not be CPU-only" >&2
    echo "  fix: rm -r $BUILD_VENV and build again with a CPU torch in TORCH_CPU" >&2
    exit 1
fi

echo "== PyInstaller $("$BUILD_VENV/bin/python" -m PyInstaller --version)"
started=$(date +%s)
"$BUILD_VENV/bin/python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" packaging/label_auditor.spec
seconds=$(( $(date +%s) - started ))
echo "== built dist/LabelAuditor in ${seconds} s; size $(du -sh dist/LabelAuditor | cut -f1)" \
     "($(find dist/LabelAuditor -type f | wc -l) files)"
