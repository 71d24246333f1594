#!/usr/bin/env bash
# This checkout's part of the reliability campaign (part E: the newer commands), after any shared parts.
#   cd /path/to/checkout && VENV=/path/to/venv bash reliability/run.sh [shared parts: a ap b c d]
# With no parts named, only part E runs. QUICK=1 for the smaller sample; E_ONLY=bad-values,kills,torchrun
# for some of E's groups. The shared campaign is read from $RELIABILITY_DIR (default ../shared/reliability
# beside the checkout); work and results go to $RELWORK (default /tmp/rel/campaign), never into the checkout.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CHECKOUT="${CHECKOUT:-$(dirname "$HERE")}"
export RELIABILITY_DIR="${RELIABILITY_DIR:-$(dirname "$CHECKOUT")/shared/reliability}"
: "${VENV:?set VENV to the virtual environment that has the project installed}"
export VENV
export RELWORK="${RELWORK:-/tmp/rel/campaign}"
export QT_QPA_PLATFORM=offscreen PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
if [ ! -f "$RELIABILITY_DIR/lib.py" ]; then
  echo "the shared campaign is not at $RELIABILITY_DIR (set RELIABILITY_DIR)" >&2
  exit 2
fi
if [ "$#" -gt 0 ]; then
  (cd "$CHECKOUT" && bash "$RELIABILITY_DIR/run.sh" "$@")
fi
cd "$CHECKOUT"
"$VENV/bin/python" "$HERE/e_commands.py"
"$VENV/bin/python" "$HERE/e_commands.py" --summary
