"""Checking every candidate image before it joins a project: the file itself (links, folders, FIFOs, outside the
image root) and then its decoder, in parallel threads, with progress (:func:`probe_all`)."""

from __future__ import annotations

import errno
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from engine.data.images import BadImage, ImageInfo, probe
from engine.data.importing.names import Candidate, inside, shown_name
from engine.events import EventSink


def probe_all(candidates: list[Candidate], events: EventSink, real_root: str | None) -> list[ImageInfo | BadImage]:
    def one(candidate: Candidate) -> ImageInfo | BadImage:
        problem = candidate.problem or _file_problem(candidate.file, real_root)
        if problem:
            return BadImage(problem)
        try:
            return probe(candidate.file)
        except BadImage as exc:
            return exc

    total = len(candidates)
    results: list[ImageInfo | BadImage] = []
    # Probing is file I/O plus decoders that release the GIL: threads overlap both.
    workers = min(32, 2 * (os.cpu_count() or 1))
    last = time.monotonic()
    events.progress("import", 0, total)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for result in pool.map(one, candidates):
            results.append(result)
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                events.progress("import", len(results), total)
    events.progress("import", total, total)
    return results


def _file_problem(file: Path, real_root: str | None) -> str | None:
    """Why ``file`` is not an image file inside the image root, before any decoder sees it; None if it is.

    Judged on the real path (links resolved), never lexically: a link that leads out of the
    image root is refused, as are broken links, link loops, folders, FIFOs, sockets and devices
    (opening a FIFO would wait forever).
    """
    try:
        info = file.stat()
    except FileNotFoundError:
        if file.is_symlink():
            return f"a broken link (it points to {shown_name(os.readlink(file))!r}, which does not exist)"
        return "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a link that loops back on itself"
        if exc.errno == errno.ENAMETOOLONG:
            return "its path is longer than the file system allows"
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError as exc:  # an embedded NUL, should one get here
        return f"not a usable path ({exc})"
    if real_root is not None:
        real = os.path.realpath(file)
        if not inside(real, real_root):
            return (f"a link to {shown_name(real)}, outside the image root {shown_name(real_root)}: refused; copy the file "
                    "into the image root to import it")
    if stat.S_ISDIR(info.st_mode):
        return "is a folder, not an image"
    if not stat.S_ISREG(info.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode)
                else "a device")
        return f"not a regular file but {kind}; only image files can be imported"
    return None
