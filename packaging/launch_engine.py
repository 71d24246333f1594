"""PyInstaller entry point of the engine executable `label-auditor-engine` (the same CLI as `python -m engine`)."""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main())
