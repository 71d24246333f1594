"""The embed job: one embedding per sample from a backbone, written in chunks, resumable, atomic.

The array is written through a memory map into ``<source>.partial.npy`` beside its final place
(never whole in memory: at 1M samples x 1280 dims it is 5 GB); ``<source>.partial.json`` records
how many rows are done and the settings that made them. A cancelled or killed job is continued by
the next ``embed`` with the same settings, from its last saved chunk; other settings start over.
When every row is written the file is synced, hashed and renamed into place, and its ``.json``
written after it (engine/embeddings/__init__.py: the layout).

Embeddings that exist are not recomputed: the same settings answer "already computed", other
settings are refused unless ``force`` (they would replace what detectors and reviews were read from).
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.cancel import CancelToken
from engine.embeddings import EmbeddingInfo, read_info
from engine.embeddings.writer import PartialEmbeddings
from engine.errors import UserError
from engine.events import EtaEstimator, EventSink
from engine.jobs import JobContext, run_job
from engine.store import Project, RunInfo

EMBED_KIND = "embed"
DEFAULT_IMAGE_SIZE = 128  # bench/embed.py: the README's table of images/s and knn ROC-AUC by input size
# Images per forward pass on a CPU: as many as keep one pass's activations in the CPU's caches, so a
# fixed number of pixels. bench/embed.py, EfficientNet-Lite0 on 2 cores (32 MB L3), best of 2: at
# 128 px batch 16 ran 320-360 images/s against 178 for batch 64 and 250 for 32; at 224 px batch 4 ran
# 110 against 73 for 16; at 64 px batch 64 ran 830 against 727 for 16.
PIXELS_PER_BATCH = 16 * 128 * 128
SAVE_EVERY_ROWS = 4096  # rows between saved progress: a resume redoes at most this many
IMAGE_SIZE_RANGE = (32, 512)
BATCH_SIZE_RANGE = (1, 4096)


def default_batch_size(image_size: int) -> int:
    """Images per forward pass at ``image_size`` px: :data:`PIXELS_PER_BATCH` pixels, 1 to 256 images."""
    return int(max(1, min(256, round(PIXELS_PER_BATCH / max(image_size, 1) ** 2))))


def embed_spec(backbone: str, image_size: int | None = None, batch_size: int | None = None,
               force: bool = False) -> dict[str, Any]:
    """The run spec of an embed job, its options checked (a UserError names the option, its value and the fix)."""
    from engine.embeddings.backbones import check_backbone_name

    check_backbone_name(backbone)
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    low, high = IMAGE_SIZE_RANGE
    if not low <= size <= high:
        raise UserError(f"--image-size {size} is out of range", f"use {low} to {high} pixels (default {DEFAULT_IMAGE_SIZE})")
    low, high = BATCH_SIZE_RANGE
    if batch_size is not None and not low <= batch_size <= high:
        raise UserError(f"--batch-size {batch_size} is out of range",
                        f"use {low} to {high} (default: {default_batch_size(size)} at {size} px)")
    return {"backbone": backbone, "image_size": size, "batch_size": None if batch_size is None else int(batch_size),
            "force": bool(force)}


def run_embed(project: Project, backbone: str = "efficientnet_lite0", *, image_size: int | None = None,
              batch_size: int | None = None, force: bool = False, events: EventSink | None = None,
              cancel: CancelToken | None = None) -> tuple[RunInfo, str]:
    """Embed every sample as a recorded run; returns (run, status: ok | error | cancelled).

    The library entry point (tests, the app's Embed action); ``python -m engine embed`` is the same job.
    The run's summary (and its ``result`` event of kind "embed") names the source and its file.
    """
    spec = embed_spec(backbone, image_size, batch_size, force)
    return run_job(project, EMBED_KIND, spec, lambda ctx: embed_body(ctx, spec), events or EventSink(), cancel=cancel)


def samples_fingerprint(project: Project) -> str:
    """What the images are: every sample's path and open-set replacement, in id order."""
    table = project.sample_table()
    digest = hashlib.sha256()
    for path, override in zip(table.paths, table.image_override):
        digest.update(f"{path}\0{override or ''}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:32]


def embed_body(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
    """The job body: :func:`compute_embeddings` with ``spec`` (:func:`embed_spec`), summarised."""
    batch_size = spec.get("batch_size")
    info, summary = compute_embeddings(ctx, spec["backbone"], int(spec["image_size"]),
                                       None if batch_size is None else int(batch_size),
                                       force=bool(spec.get("force")))
    if not summary["reused"]:
        ctx.events.result("embed", summary)
    return summary


def compute_embeddings(ctx: JobContext, backbone_name: str, image_size: int, batch_size: int | None = None,
                       *, force: bool = False) -> tuple[EmbeddingInfo, dict[str, Any]]:
    """Embed every sample of ``ctx.project`` with ``backbone_name`` inside the job ``ctx`` (an embed or an audit
    run): the stored source and a summary. Existing embeddings of these settings are reused. ``batch_size``
    None: :func:`default_batch_size` at the backbone's image size."""
    from engine.embeddings.backbones import load_backbone

    project, events = ctx.project, ctx.events
    n = project.num_samples
    if n == 0:
        raise UserError(f"the project {project.root} has no samples to embed", "import a dataset first (python -m engine init)")
    backbone = load_backbone(backbone_name, image_size, project, events.log)
    key = {"backbone": backbone.name, "weights": backbone.identity, "image_size": backbone.image_size,
           "dims": backbone.dims, "num_samples": n, "samples": samples_fingerprint(project)}
    existing = read_info(project.root, backbone.name)
    if existing is not None and not force:
        if existing.meta.get("key") == key:
            events.log(f"embeddings {backbone.name!r} are already computed with these settings: {existing.path}")
            return existing, _summary(existing, reused=True)
        made = existing.meta.get("key", {})
        raise UserError(
            f"the project already has embeddings {backbone.name!r} made with other settings (image size "
            f"{made.get('image_size', '?')}, {made.get('num_samples', '?')} samples)",
            f"pass --force to replace them: python -m engine embed {project.root} --backbone {backbone.name} --force")
    writer = PartialEmbeddings(project.root, backbone.name, n, backbone.dims, key)
    if writer.rows_done:
        events.log(f"resuming: rows 0-{writer.rows_done - 1} of {n} were embedded by an earlier run")
    started = time.perf_counter()
    first = writer.rows_done
    _embed_rows(ctx, backbone, writer, default_batch_size(backbone.image_size) if batch_size is None else batch_size)
    seconds = time.perf_counter() - started
    meta = {"source": backbone.name, "kind": "computed", "backbone": backbone.name, "image_size": backbone.image_size,
            "weights": backbone.identity, "key": key, "run_id": ctx.run.id, "created": time.time()}
    info = writer.finish(meta)
    summary = _summary(info, reused=False)
    summary["seconds"] = round(seconds, 3)
    summary["images_per_s"] = round((n - first) / seconds, 1) if seconds > 0 else None
    events.log(f"embedded {n} samples with {backbone.name} ({backbone.dims} dims) at {backbone.image_size} px: {info.path}")
    return info, summary


def _summary(info: EmbeddingInfo, *, reused: bool) -> dict[str, Any]:
    return {"source": info.source, "path": str(info.path), "num_samples": info.num_samples, "dims": info.dims,
            "sha256": info.sha256, "image_size": info.meta.get("image_size"), "reused": reused}


def _embed_rows(ctx: JobContext, backbone: Any, writer: PartialEmbeddings, batch_size: int) -> None:
    """Fill ``writer`` from its first missing row: the next batch decodes in threads while this one runs."""
    import torch

    project, events, cancel = ctx.project, ctx.events, ctx.cancel
    n = writer.num_samples
    pixels = _PixelSource(project, backbone.image_size, backbone.pixels, events, cancel)
    mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
    std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1) * 255
    starts = list(range(writer.rows_done, n, batch_size))
    eta = EtaEstimator(n - writer.rows_done)
    events.progress("embed", writer.rows_done, n, None, f"{backbone.name} at {backbone.image_size} px")
    last_saved = written = writer.rows_done
    with ThreadPoolExecutor(max_workers=1) as pool, pixels, torch.inference_mode():
        pending: Future[np.ndarray] | None = pool.submit(pixels.read, starts[0], min(starts[0] + batch_size, n)) \
            if starts else None
        for index, start in enumerate(starts):
            if cancel.requested:
                writer.save_progress(written)  # the next embed continues from here
                cancel.raise_if_requested()
            assert pending is not None
            raw = pending.result()
            stop = min(start + batch_size, n)
            pending = pool.submit(pixels.read, starts[index + 1], min(starts[index + 1] + batch_size, n)) \
                if index + 1 < len(starts) else None
            writer.write(start, embed_batch(backbone, raw, mean, std))
            written = stop
            if stop - last_saved >= SAVE_EVERY_ROWS or stop == n:
                writer.save_progress(stop)
                last_saved = stop
            events.progress("embed", stop, n, eta.eta(stop - starts[0]))


def embed_batch(backbone: Any, raw: np.ndarray, mean: Any = None, std: Any = None) -> np.ndarray:
    """(B, D) float32 embeddings of uint8 (B, S, S, 3) images (S: the backbone's image size)."""
    import torch

    if mean is None or std is None:
        mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255
        std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1) * 255
    with torch.inference_mode():
        raw = np.ascontiguousarray(raw)
        if not raw.flags.writeable:  # a slice of the read-only image cache: torch wants memory it may write
            raw = raw.copy()
        x = torch.from_numpy(raw).permute(0, 3, 1, 2).float()
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        return np.asarray(backbone.module(x).float().numpy(), dtype=np.float32)


class _PixelSource:
    """uint8 (B, S, S, 3) images of sample ids ``start:stop``: decoded from their files, or the training cache."""

    def __init__(self, project: Project, size: int, kind: str, events: EventSink, cancel: CancelToken) -> None:
        self.size = size
        self.cache: np.ndarray | None = None
        table = project.sample_table()
        self.names = table.paths
        if kind == "cache":
            from engine.data.cache import ensure_cache

            self.cache = ensure_cache(project, size, events=events, cancel=cancel)
        else:
            root = project.image_root
            self.sources = [project.root / override if override else root / path
                            for path, override in zip(table.paths, table.image_override)]
        self._pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))

    def __enter__(self) -> _PixelSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def read(self, start: int, stop: int) -> np.ndarray:
        if self.cache is not None:
            return np.asarray(self.cache[start:stop])
        return np.stack(list(self._pool.map(self._decode, range(start, stop))))

    def _decode(self, index: int) -> np.ndarray:
        from engine.data import images

        try:
            return images.load_square_rgb(self.sources[index], self.size)
        except images.BadImage as exc:
            raise UserError(f"sample {index} ({self.names[index]!r}) can no longer be read: {exc.reason}",
                            f"restore {self.sources[index]} (it was readable at import), or import the dataset again"
                            ) from None
        except FileNotFoundError:
            raise UserError(f"sample {index} ({self.names[index]!r}): {self.sources[index]} is gone",
                            "restore the image (it was there at import), or import the dataset again") from None
