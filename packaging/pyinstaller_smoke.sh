#!/usr/bin/env bash
# Run the frozen bundle (bash packaging/build_bundle.sh makes it) as a person would, with no Python of ours
# on the path: the engine executable makes the demo, reports its status and runs a 1-epoch audit; the
# GUI executable, offscreen, makes the demo through the bundled engine and opens the audited project.
#
#   bash packaging/pyinstaller_smoke.sh [BUNDLE]     # default dist/LabelAuditor
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$(cd "${1:-$ROOT/dist/LabelAuditor}" && pwd)"
ENGINE="$BUNDLE/label-auditor-engine"
GUI="$BUNDLE/auditor"
WORK="$(mktemp -d -t label-auditor-bundle.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
for program in "$ENGINE" "$GUI"; do
    [ -x "$program" ] || { echo "error: no executable $program; fix: bash packaging/build_bundle.sh" >&2; exit 2; }
done
mkdir -p "$WORK/home"
cd "$WORK"
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" LABEL_AUDITOR_DATA_DIR="$WORK/data"
export QT_QPA_PLATFORM=offscreen
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
step() { echo "== $*"; }
took() { echo "   ($(( $(date +%s) - $1 )) s)"; }

# The last event of a --json job must be done with status ok.
check_done() {
    local last
    last=$(grep '"type": "done"' "$1" | tail -1 || true)
    case "$last" in
        *'"status": "ok"'*) echo "   $(grep -c '"type": "progress"' "$1") progress events, then done ok" ;;
        *) echo "error: $2 did not end with done ok: ${last:-no done event}" >&2; tail -20 "$1" "$WORK/err" >&2; exit 1 ;;
    esac
}

step "bundle: $BUNDLE, $(du -sh "$BUNDLE" | cut -f1)"
step "label-auditor-engine --protocol"
"$ENGINE" --protocol

step "label-auditor-engine demo --json"
start=$(date +%s)
"$ENGINE" demo "$WORK/demo" --json > "$WORK/demo.jsonl" 2> "$WORK/err"
check_done "$WORK/demo.jsonl" demo; took "$start"

step "label-auditor-engine status"
"$ENGINE" status "$WORK/demo"

step "label-auditor-engine audit --epochs 1 --json"
start=$(date +%s)
"$ENGINE" audit "$WORK/demo" --epochs 1 --device cpu --json > "$WORK/audit.jsonl" 2> "$WORK/err"
check_done "$WORK/audit.jsonl" audit; took "$start"

step "auditor --demo --smoke (the GUI makes the demo with the bundled engine)"
start=$(date +%s)
"$GUI" --demo --smoke 2> "$WORK/err" | tee "$WORK/gui.json" || { tail -30 "$WORK/err" >&2; exit 1; }
took "$start"
step "auditor PROJECT --smoke (the audited project: review, plots)"
"$GUI" "$WORK/demo" --smoke 2> "$WORK/err" | tee -a "$WORK/gui.json" || { tail -30 "$WORK/err" >&2; exit 1; }
for field in '"smoke": "ok"' '"styled": true' '"icon": true' '"frozen": true'; do
    [ "$(grep -c "$field" "$WORK/gui.json")" = 2 ] || { echo "error: a GUI run lacks $field" >&2; exit 1; }
done
step "bundle smoke passed"
