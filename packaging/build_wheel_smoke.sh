#!/usr/bin/env bash
# Proof that the wheel ships what the app needs: build the sdist and the wheel (the wheel from the sdist),
# check both carry resources/, install the wheel into a fresh virtual environment, and run the installed
# `auditor` offscreen on the demo (--smoke: open, paint every page, quit) and `label-auditor-engine status`.
#
#   bash packaging/build_wheel_smoke.sh          # from the repository root or anywhere
#
# WORK     scratch folder (default: a new temporary folder, removed at the end unless KEEP=1)
# PYTHON   the interpreter for the virtual environments (default python3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="${WORK:-$(mktemp -d -t label-auditor-wheel.XXXXXX)}"
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
step() { echo "== $*"; }

step "building the sdist and the wheel (in $WORK/dist)"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install -q "build>=1.2,<2"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 \
    || { tail -30 "$WORK/build.log"; exit 1; }
wheel=$(ls "$WORK"/dist/*.whl)
sdist=$(ls "$WORK"/dist/*.tar.gz)

step "checking that both carry every file of resources/"
"$WORK/tools/bin/python" - "$ROOT/resources" "$wheel" "$sdist" <<'PY'
import sys, tarfile, zipfile
from pathlib import Path

resources, wheel, sdist = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
wanted = sorted(p.relative_to(resources).as_posix() for p in resources.rglob("*") if p.is_file())
in_wheel = {name.removeprefix("engine/resources/") for name in zipfile.ZipFile(wheel).namelist()}
in_sdist = {"/".join(name.split("/")[2:]) for name in tarfile.open(sdist).getnames() if name.split("/")[1:2] == ["resources"]}
missing = [f"wheel: engine/resources/{n}" for n in wanted if n not in in_wheel]
missing += [f"sdist: resources/{n}" for n in wanted if n not in in_sdist]
if missing or "style.qss" not in wanted:
    sys.exit("missing from the packages: " + ", ".join(missing or ["resources/style.qss itself"]))
print(f"{len(wanted)} resource files in both: {', '.join(wanted)}")
PY

step "installing the wheel into a fresh virtual environment ($WORK/venv)"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# torch first, exactly this build (as `make` does), then the wheel with the rest of its dependencies.
"$VPY" -m pip install -q torch==2.14.1 torchvision==0.29.1
"$VPY" -m pip install -q "$wheel"

# Run from an empty folder with a private home, so nothing from the checkout or this user is picked up.
mkdir -p "$WORK/run" "$WORK/home"
cd "$WORK/run"
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" LABEL_AUDITOR_DATA_DIR="$WORK/data"
export QT_QPA_PLATFORM=offscreen PYTHONNOUSERSITE=1
unset PYTHONPATH

step "auditor --demo --smoke (offscreen; the installed engine makes the demo)"
"$WORK/venv/bin/auditor" --demo --smoke 2> "$WORK/auditor.err" | tee "$WORK/smoke.json" \
    || { tail -30 "$WORK/auditor.err"; exit 1; }
"$VPY" - "$WORK/smoke.json" "$WORK/venv" <<'PY'
import json, sys

report = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
checks = {"the smoke run passed": report.get("smoke") == "ok",
          "the stylesheet was applied": report.get("styled") is True,
          "the app icon was found": report.get("icon") is True,
          "resources came from the installed package": report.get("resources", "").startswith(sys.argv[2])}
failed = [name for name, ok in checks.items() if not ok]
if failed:
    sys.exit("smoke check failed: " + "; ".join(failed))
PY

step "label-auditor-engine status"
"$WORK/venv/bin/label-auditor-engine" status "$WORK/data/demo"

step "wheel smoke passed: $(basename "$wheel") ($(du -h "$wheel" | cut -f1)), sdist $(basename "$sdist")"
