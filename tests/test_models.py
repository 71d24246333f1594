"""Models: the small CNN, ResNets with a small-image stem, user models, starting weights (--pretrained, --weights)."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.data.importing import import_folder
from engine.errors import UserError
from engine.models import (
    build_model,
    file_sha256,
    identify_starting_weights,
    pretrained_weights_file,
    weights_state,
)
from engine.store import Project
from engine.training.config import DEFAULT_MODEL, TrainConfig


def test_small_cnn_is_small_and_classifies() -> None:
    model = build_model("small_cnn", num_classes=7, image_size=32)
    assert 200_000 < sum(p.numel() for p in model.parameters()) < 280_000
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_cnn7p_is_the_default_and_cnn7_classifies_images_down_to_the_digits_8_px() -> None:
    assert TrainConfig().model == DEFAULT_MODEL == "cnn7p"
    for size in (8, 16, 28, 32, 64):  # pooling rounds up: 8 px keeps a pixel through all five stages
        model = build_model("cnn7", num_classes=7, image_size=size)
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)
    assert 500_000 < sum(p.numel() for p in model.parameters()) < 650_000
    convs = [module for module in model.modules() if isinstance(module, torch.nn.Conv2d)]
    assert len(convs) == 7 and convs[0].out_channels == 16


def test_cnn7p_pools_before_batchnorm_with_cnn7s_parameters_at_every_size() -> None:
    for size in (8, 32):
        fast, plain = build_model("cnn7p", num_classes=7, image_size=size), build_model("cnn7", 7, size)
        assert fast(torch.zeros(2, 3, size, size)).shape == (2, 7)
        assert [p.shape for p in fast.parameters()] == [p.shape for p in plain.parameters()]
    assert [type(m).__name__ for m in fast.features[0]] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]
    last_stage = [m for m in fast.features if isinstance(m, torch.nn.Sequential)][-1]
    assert [type(m).__name__ for m in last_stage] == ["Conv2d", "BatchNorm2d", "ReLU"]  # no pooling: as cnn7


def _relu_before_pool(model: torch.nn.Module) -> torch.nn.Module:
    """The same model with each block's ReLU moved back before its pooling (the order before 2026-12-07)."""
    for block in model.modules():
        if isinstance(block, torch.nn.Sequential) and len(block) == 4 and isinstance(block[2], torch.nn.MaxPool2d):
            pool, relu = block[2], block[3]
            block[2], block[3] = relu, pool
    return model


@pytest.mark.parametrize("size", [8, 28, 32])
def test_pooling_before_relu_computes_what_relu_before_pooling_did(size: int) -> None:
    torch.manual_seed(0)
    model = build_model("cnn7", num_classes=10, image_size=size)
    old = _relu_before_pool(build_model("cnn7", num_classes=10, image_size=size))
    old.load_state_dict(model.state_dict())  # same parameter names: old checkpoints load
    assert [type(m).__name__ for m in model.features[0]] == ["Conv2d", "BatchNorm2d", "MaxPool2d", "ReLU"]
    images = torch.randn(6, 3, size, size)
    outputs = [net(images) for net in (model, old)]
    torch.testing.assert_close(outputs[0], outputs[1])
    grads = []
    for net, out in zip((model, old), outputs):
        out.square().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for new_grad, old_grad in zip(*grads):
        torch.testing.assert_close(new_grad, old_grad)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_get_a_small_image_stem(name: str) -> None:
    model = build_model(name, num_classes=4, image_size=32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)  # type: ignore[union-attr]
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    big = build_model(name, num_classes=4, image_size=224)
    assert big.conv1.kernel_size == (7, 7)  # type: ignore[union-attr]


def test_a_user_model_named_module_colon_callable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_models.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
        "def not_a_model(num_classes):\n"
        "    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert build_model("my_models:tiny", 5, 32)(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(UserError, match="not a torch.nn.Module"):
        build_model("my_models:not_a_model", 5, 32)
    with pytest.raises(UserError, match="has no callable 'missing'"):
        build_model("my_models:missing", 5, 32)
    with pytest.raises(UserError, match="unknown model 'vgg'"):
        build_model("vgg", 5, 32)



RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's file name: its sha256 starts with f37072fd


class OfflineTorchHub:
    """An empty torch cache under TORCH_HOME and a network that is down; it keeps every download attempt."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.checkpoints = home / "hub" / "checkpoints"
        self.attempts: list[str] = []

    def download(self, url: str, *args: object, **kwargs: object) -> None:
        self.attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OfflineTorchHub:
    hub = OfflineTorchHub(tmp_path / "torch")
    monkeypatch.setenv("TORCH_HOME", str(hub.home))
    monkeypatch.setattr(torch.hub, "download_url_to_file", hub.download)
    return hub


def save_imagenet_shaped_resnet18(path: Path) -> None:
    """A stand-in for torchvision's file: a resnet18 state dict with the 7x7 stem and 1000-class head."""
    from torchvision import models

    torch.manual_seed(1)
    torch.save(models.resnet18(weights=None).state_dict(), path)


def test_offline_pretrained_names_the_file_to_place_and_the_folder(offline_hub: OfflineTorchHub) -> None:
    assert weights_state("resnet18") == "downloadable"
    assert pretrained_weights_file("resnet18") == offline_hub.checkpoints / RESNET18_FILE
    with pytest.raises(UserError) as info:
        build_model("resnet18", num_classes=3, image_size=32, pretrained=True)
    message = info.value.message
    assert message == f"no network to fetch {RESNET18_FILE}: place it in {offline_hub.checkpoints} or pass --weights FILE"
    assert "https://download.pytorch.org/models/" + RESNET18_FILE in info.value.hint
    assert offline_hub.attempts == ["https://download.pytorch.org/models/" + RESNET18_FILE]
    assert not list(offline_hub.checkpoints.iterdir())  # nothing half-written left in the cache
    assert weights_state("small_cnn") == "unavailable" and weights_state("my_models:tiny") == "unavailable"


def test_offline_pretrained_on_the_command_line_is_one_clear_line(
        offline_hub: OfflineTorchHub, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import_folder(tmp_path / "project", image_folder, test_fraction=0.25, seed=0).close()
    code = main(["crossval", str(tmp_path / "project"), "--model", "resnet18", "--pretrained", "--epochs", "1",
                 "--folds", "2", "--batch-size", "8", "--image-size", "16", "--workers", "1"])
    assert code == 1  # the run failed; once the file is placed, --resume continues it
    err = capsys.readouterr().err
    assert f"no network to fetch {RESNET18_FILE}: place it in {offline_hub.checkpoints} or pass --weights FILE" in err


def test_a_cached_pretrained_file_loads_without_the_network(
        offline_hub: OfflineTorchHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet18_Weights

    offline_hub.checkpoints.mkdir(parents=True)
    made = tmp_path / "made.pth"
    save_imagenet_shaped_resnet18(made)
    # A file under torchvision's name whose contents do not carry that name's hash is refused.
    (offline_hub.checkpoints / RESNET18_FILE).write_bytes(made.read_bytes())
    with pytest.raises(UserError, match=f"{RESNET18_FILE} is damaged: its sha256 does not start with f37072fd"):
        build_model("resnet18", num_classes=3, image_size=32, pretrained=True)
    # Point torchvision's resnet18 weights at a name carrying our file's hash, and cache the file under it.
    cached_name = f"resnet18-{file_sha256(made)[:8]}.pth"
    made.rename(offline_hub.checkpoints / cached_name)
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"https://download.pytorch.org/models/{cached_name}")
    assert weights_state("resnet18") == "cached"

    config = TrainConfig(model="resnet18", pretrained=True, image_size=32)
    assert (config.weights_name, config.weights_sha256) == ("ResNet18_Weights.IMAGENET1K_V1", cached_name[9:17])
    logs: list[str] = []
    model = build_model("resnet18", 3, 32, pretrained=True, weights=config.starting_weights(), log=logs.append)
    assert offline_hub.attempts == []
    reference = torch.load(offline_hub.checkpoints / cached_name, weights_only=True)
    assert torch.equal(model.state_dict()["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"])
    assert model.conv1.weight.shape == (64, 3, 3, 3) and model.fc.out_features == 3  # type: ignore[union-attr]
    assert logs == [f"resnet18 starts from {cached_name}; made new: conv1 (3x3 stem for small images), "
                    "fc (classifier head for 3 classes)"]


def test_a_local_weights_file_trains_and_the_run_records_it(image_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(5)
    donor = build_model("small_cnn", num_classes=10, image_size=16)  # another project's 10 classes
    weights = tmp_path / "donor.pt"
    torch.save({"epoch": 7, "state_dict": donor.state_dict()}, weights)  # a training checkpoint's layout
    project_root = tmp_path / "project"
    import_folder(project_root, image_folder, test_fraction=0.25, seed=0).close()
    code = main(["crossval", str(project_root), "--model", "small_cnn", "--weights", str(weights), "--epochs", "1",
                 "--folds", "2", "--batch-size", "8", "--image-size", "16", "--workers", "1"])
    assert code == 0
    with Project.open(project_root) as project:
        run = project.runs()[0]
        assert run.status == "ok"
        assert "heldout_accuracy_measured_against" in run.summary and "heldout_evaluated_against" not in run.summary
        train = run.spec["train"]
        events = (run.folder / "events.jsonl").read_text()
    assert (train["weights"], train["weights_name"]) == (str(weights), "donor.pt")
    assert train["weights_sha256"] == file_sha256(weights)[:16]
    assert "small_cnn starts from " + str(weights) + "; made new: head (classifier head for 3 classes)" in events

    # The features come from the file; the head is new for this project's three classes.
    config = TrainConfig.from_dict(train)
    model = build_model("small_cnn", 3, 16, weights=config.starting_weights())
    assert torch.equal(model.state_dict()["features.0.0.weight"], donor.state_dict()["features.0.0.weight"])
    assert model.head.out_features == 3  # type: ignore[union-attr]
    # A resume loads the file the run started from, or refuses: never other weights under the same name.
    torch.save({"state_dict": build_model("small_cnn", 10, 16).state_dict()}, weights)
    with pytest.raises(UserError, match="donor.pt changed since the run started"):
        build_model("small_cnn", 3, 16, weights=TrainConfig.from_dict(train).starting_weights())
    weights.unlink()
    with pytest.raises(UserError, match="donor.pt that this run starts from is gone"):
        build_model("small_cnn", 3, 16, weights=TrainConfig.from_dict(train).starting_weights())


def test_a_bad_weights_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    def start_from(path: Path, model: str = "small_cnn") -> UserError:
        with pytest.raises(UserError) as info:
            build_model(model, 3, 16, weights=identify_starting_weights(model, weights_file=path))
        assert str(path) in info.value.message
        return info.value

    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    assert "is not a PyTorch state dict" in start_from(text).message
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    assert "holds list, not a state dict" in start_from(listed).message
    pickled = tmp_path / "array.pt"
    torch.save({"weights": np.zeros(3)}, pickled)  # needs unpickling numpy: refused by weights_only
    assert "is not a PyTorch state dict" in start_from(pickled).message
    resnet = tmp_path / "resnet.pt"
    save_imagenet_shaped_resnet18(resnet)
    error = start_from(resnet)
    assert "do not fit small_cnn" in error.message and "conv1.weight is not in small_cnn" in error.message
    assert "the --model they were saved from" in error.hint
    wrong_width = tmp_path / "wide.pt"
    torch.save(build_model("small_cnn", 3, 16).state_dict() | {"features.0.0.weight": torch.zeros(8, 3, 3, 3)},
               wrong_width)
    assert "features.0.0.weight is (8, 3, 3, 3) there, (32, 3, 3, 3) in small_cnn" in start_from(wrong_width).message

    with pytest.raises(UserError, match="does not exist"):
        TrainConfig(weights=str(tmp_path / "missing.pt"))
    with pytest.raises(UserError, match="--pretrained and --weights both"):
        TrainConfig(model="resnet18", pretrained=True, weights=str(resnet))
    with pytest.raises(UserError, match=f"{DEFAULT_MODEL} has no pretrained weights"):
        TrainConfig(pretrained=True)  # the default model
