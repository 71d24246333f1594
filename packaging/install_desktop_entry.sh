#!/usr/bin/env bash
# Add Label Auditor to the Linux desktop's application menu: the .desktop entry and its icon, for this user
# (freedesktop.org locations under ${XDG_DATA_HOME:-~/.local/share}).
#
#   bash packaging/install_desktop_entry.sh [AUDITOR]
#
# AUDITOR is the app's executable: the `auditor` script of a pip install (default: the one on PATH) or
# the bundle's dist/LabelAuditor/auditor. The entry names it by absolute path, so a virtual environment
# need not be active. --uninstall removes both files again.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DATA="${XDG_DATA_HOME:-$HOME/.local/share}"
ENTRY="$DATA/applications/label-auditor.desktop"
ICON="$DATA/icons/hicolor/scalable/apps/label-auditor.svg"

refresh() {
    # Menus pick the change up by themselves; these only speed it up, where they exist.
    if command -v update-desktop-database >/dev/null; then update-desktop-database -q "$DATA/applications" || true; fi
    if command -v gtk-update-icon-cache >/dev/null; then gtk-update-icon-cache -q -t "$DATA/icons/hicolor" || true; fi
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$ENTRY" "$ICON"
    refresh
    echo "removed $ENTRY and $ICON"
    exit 0
fi

AUDITOR="${1:-$(command -v auditor || true)}"
if [ -z "$AUDITOR" ] || [ ! -x "$AUDITOR" ]; then
    echo "error: no auditor executable $([ -n "${1:-}" ] && echo "at $1" || echo "on PATH")" >&2
    echo "  fix: pip install label-auditor (then activate its environment), or name the executable:" \
         "bash $0 /path/to/auditor" >&2
    exit 2
fi
AUDITOR="$(cd "$(dirname "$AUDITOR")" && pwd)/$(basename "$AUDITOR")"
case "$AUDITOR" in
    *[[:space:]\"\'\\\`\$]*)
        echo "error: the path $AUDITOR has characters a .desktop Exec line would need quoted" >&2
        echo "  fix: install the app under a path without spaces or quotes" >&2
        exit 2 ;;
esac

mkdir -p "$(dirname "$ENTRY")" "$(dirname "$ICON")"
cp "$HERE/../resources/icons/app.svg" "$ICON"
sed "s|^Exec=auditor |Exec=$AUDITOR |" "$HERE/label-auditor.desktop" > "$ENTRY"
chmod 644 "$ENTRY" "$ICON"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$ENTRY"; fi
refresh
echo "installed $ENTRY (runs $AUDITOR) and $ICON"
