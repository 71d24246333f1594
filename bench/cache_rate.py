"""Cache build rate: import an image folder into a throw-away project and time ``ensure_cache``.

    python bench/cache_rate.py FOLDER [--image-size 32] [--workers N] [--repeat-open]

FOLDER is an ImageFolder dataset (``<folder>/<class>/<image>``). Prints images/s for the
first (decoding) build and the time to reopen the finished cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from engine.data.cache import ensure_cache  # noqa: E402
from engine.data.importing import import_folder  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: all cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cache-rate-") as scratch:
        start = time.perf_counter()
        project = import_folder(Path(scratch) / "project", args.folder, test_fraction=0, folds=2)
        imported = time.perf_counter() - start
        count = project.num_samples
        start = time.perf_counter()
        array = ensure_cache(project, args.image_size, workers=args.workers)
        built = time.perf_counter() - start
        start = time.perf_counter()
        ensure_cache(project, args.image_size)
        reopened = time.perf_counter() - start
        project.close()
    print(f"images: {count}  shape: {array.shape}  workers: {args.workers or 'all cores'}")
    print(f"import (probe): {imported:.2f} s  = {count / imported:,.0f} images/s")
    print(f"cache build:    {built:.2f} s  = {count / built:,.0f} images/s")
    print(f"cache reuse:    {reopened * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
