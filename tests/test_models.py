"""Models: the small CNN, ResNets with a small-image stem, user models, offline pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.errors import UserError
from engine.models import build_model


def test_small_cnn_is_small_and_classifies() -> None:
    model = build_model("small_cnn", num_classes=7, image_size=32)
    assert 200_000 < sum(p.numel() for p in model.parameters()) < 280_000
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnets_get_a_small_image_stem(name: str) -> None:
    model = build_model(name, num_classes=4, image_size=32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)  # type: ignore[union-attr]
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    big = build_model(name, num_classes=4, image_size=224)
    assert big.conv1.kernel_size == (7, 7)  # type: ignore[union-attr]


def test_pretrained_weights_missing_offline_is_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(UserError, match="not in the local torch cache") as info:
        build_model("resnet18", num_classes=3, image_size=32, pretrained=True)
    assert "resnet18" in info.value.message and str(tmp_path / "hub" / "checkpoints") in info.value.hint


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
