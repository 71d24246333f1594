"""PyInstaller entry point of the GUI executable `auditor` (a script outside the package, so `auditor` stays a package)."""

import sys

from auditor.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
