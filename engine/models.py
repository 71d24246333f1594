"""Models: a small fast CNN (the CPU default), torchvision ResNets, or any ``module:callable``.

Starting weights. ``--pretrained`` takes torchvision's ImageNet weights from the torch hub cache
(``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``), fetching them there
on first use, with a progress bar on stderr, when the network allows; offline it says which file to
place where. ``--weights FILE`` takes a local state dict. Either way the run's spec records which
weights (a name and a sha256 prefix), so a resumed run starts every model from the same ones, and
layers this project must replace (the classifier head for its classes, the small-image stem) are
made new and said so; any other mismatch is an error naming the file.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import socket
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from engine.errors import UserError, user_error_from_oserror

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

TORCHVISION_RESNETS = ("resnet18", "resnet34", "resnet50")
OWN_MODELS = ("cnn7", "cnn7p", "small_cnn")  # built here, trained from scratch unless given --weights
MODEL_CHOICES = (*OWN_MODELS, *TORCHVISION_RESNETS)


def _conv_block(in_channels: int, out_channels: int, pool: bool, *, ceil_mode: bool = False,
                pool_before_norm: bool = False) -> nn.Sequential:
    """conv, BatchNorm, ReLU and (``pool``) a 2x2 max pooling, which runs *before* the ReLU.

    The two commute exactly (both monotone: relu(max(x)) == max(relu(x)), and where they differ
    on ties the gradient is zero either way), so the block computes what conv-BN-ReLU-pool does,
    with the same parameters under the same names (the ReLU and pooling hold none); the ReLU then
    runs on a quarter of the pixels. Measured on two CPU cores, float32: ``cnn7`` trains about 3%
    faster at 32 px, where the full-resolution ReLU's backward was 3% of a step.

    ``pool_before_norm`` (``cnn7p``) pools straight after the convolution, as the fast CIFAR-10
    trainers do (conv, pool, BatchNorm, activation): BatchNorm then normalises a quarter of the
    pixels, its statistics taken after the pooling, so it is another function, not a reordering.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
    norm = nn.BatchNorm2d(out_channels)
    if not pool:
        return nn.Sequential(conv, norm, nn.ReLU(inplace=True))
    pooling = nn.MaxPool2d(2, ceil_mode=ceil_mode)
    if pool_before_norm:  # another function: BatchNorm's statistics are the pooled pixels'
        return nn.Sequential(conv, pooling, norm, nn.ReLU(inplace=True))
    return nn.Sequential(conv, norm, pooling, nn.ReLU(inplace=True))


class Cnn7(nn.Module):
    """Seven 3x3 conv layers in five stages (16 | 32 | 64-64 | 128-128 | 256 channels), global pooling, a linear head.

    The default model until 2026-12-07 (now its variant ``cnn7p``, pooling before BatchNorm: 10-12%
    faster in float32). Narrow where the image is large and wide where it is small: a pooling
    after each of the first four stages, so the 256-channel layer works on 2x2 at 32 px. Against
    ``small_cnn`` (four layers, 32-64-128-128) it is deeper (a larger receptive field) with
    about 580k parameters against 240k, and on two CPU cores it trains *faster* (about 3,700
    against 3,000 images/s at 32 px in bf16, batch 128), because the full-resolution layer
    has 16 channels instead of 32. Measured for the dynamics audit on CIFAR-10N ``worse_label``,
    images 1,000-1,999 of each class (not the benchmark's), 45 epochs: AUM ROC-AUC 0.902
    against 0.895, in 147 s against 172 s. Pooling rounds up, so an 8 px image (the digits demo)
    keeps one pixel through the last stages instead of none.
    """

    STAGES = ((16,), (32,), (64, 64), (128, 128), (256,))

    def __init__(self, num_classes: int, *, pool_before_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for index, stage in enumerate(self.STAGES):
            for position, channels in enumerate(stage):
                pool = position == len(stage) - 1 and index < len(self.STAGES) - 1
                layers.append(_conv_block(in_channels, channels, pool, ceil_mode=True,
                                          pool_before_norm=pool_before_norm))
                in_channels = channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Four 3x3 conv layers (32-64-128-128, about 240k parameters), global pooling, a linear head.

    The default before ``cnn7``; kept so older runs resume and compare as they were made.

    Pooling after each of the first three layers keeps it fast on a CPU (about 1,000 images/s
    at 32 px on two cores, channels-last) at a small cost in accuracy.
    """

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, width, pool=True),
            _conv_block(width, width * 2, pool=True),
            _conv_block(width * 2, width * 4, pool=True),
            _conv_block(width * 4, width * 4, pool=False),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def default_learning_rate(model_name: str, pretrained: bool) -> float:
    """The peak learning rate; ``pretrained`` means the model starts from trained weights (either kind)."""
    if pretrained:
        return 0.01  # fine-tuning: do not wreck the pretrained features
    return 0.2 if model_name in OWN_MODELS else 0.1


LogFn = Callable[[str], None]
WeightsState = Literal["cached", "downloadable", "unavailable"]
FILE_SHA256_PREFIX = 16  # hex digits recorded for a local weights file: plenty to tell two files apart
DOWNLOAD_TIMEOUT_S = 30  # per socket operation: a network that swallows packets must fail, not hang the job
_URL_HASH = re.compile(r"-([a-f0-9]{8,})\.")  # torchvision names files name-<sha256 prefix>.pth


@dataclass(frozen=True)
class StartingWeights:
    """Which trained weights a model starts from, as a run's spec records them."""

    source: Literal["torchvision", "file"]
    name: str  # the torchvision weights ("ResNet18_Weights.IMAGENET1K_V1"), or the local file's name
    sha256: str  # a prefix of the file's sha256: the same name with other contents is refused
    path: str | None = None  # the local file (source "file"), absolute

    def describe(self) -> str:
        return f"{self.name} (sha256 {self.sha256})"


def build_model(name: str, num_classes: int, image_size: int, pretrained: bool = False, *,
                weights: StartingWeights | None = None, log: LogFn | None = None) -> nn.Module:
    """Make a model (uses the global torch RNG for what is freshly initialised: seed before calling).

    ``weights`` (as :func:`identify_starting_weights` records them) says what to start from;
    ``pretrained`` without ``weights`` means torchvision's default ImageNet weights. ``log``
    hears which layers were made new.
    """
    if weights is None and pretrained:
        weights = identify_starting_weights(name, pretrained=True)
    model, replaced_layers = _build_architecture(name, num_classes, image_size)
    if weights is not None:
        state, label = _starting_state(weights, name, log)
        _load_starting_state(model, state, label, name, replaced_layers, log)
    return model


def _build_architecture(name: str, num_classes: int, image_size: int) -> tuple[nn.Module, dict[str, str]]:
    """The freshly initialised model, and the layers (state-dict prefix -> what) made for this project."""
    if name in OWN_MODELS:
        own: nn.Module = (Cnn7(num_classes, pool_before_norm=name == "cnn7p") if name.startswith("cnn7")
                          else SmallCNN(num_classes))
        return own, {"head.": f"classifier head for {num_classes} classes"}
    if name in TORCHVISION_RESNETS:
        return _build_resnet(name, num_classes, image_size)
    if ":" in name:
        model = _build_user_model(name, num_classes)
        linear_layers = [module_name for module_name, module in model.named_modules() if isinstance(module, nn.Linear)]
        head = {f"{linear_layers[-1]}.": f"classifier head for {num_classes} classes"} if linear_layers else {}
        return model, head
    raise UserError(
        f"unknown model {name!r}",
        f"use one of {', '.join(MODEL_CHOICES)}, or module:callable naming a function that takes num_classes",
    )


def _build_resnet(name: str, num_classes: int, image_size: int) -> tuple[nn.Module, dict[str, str]]:
    from torchvision import models

    model = models.get_model(name, weights=None)
    assert isinstance(model, models.ResNet)
    replaced = {"fc.": f"classifier head for {num_classes} classes"}
    if image_size <= 64:
        # Small images: a 3x3 stride-1 stem and no max-pool keep spatial detail a 7x7/2 + pool would destroy.
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        replaced["conv1."] = "3x3 stem for small images"
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model, replaced


# ------------------------------------------------------------------ starting weights
def identify_starting_weights(model_name: str, pretrained: bool = False,
                              weights_file: str | Path | None = None) -> StartingWeights | None:
    """What a new run starts from, recorded in its spec; no network (a torchvision file's name holds its hash)."""
    if pretrained and weights_file is not None:
        raise UserError("--pretrained and --weights both name the weights to start from",
                        "pass one: --pretrained for torchvision's ImageNet weights, --weights FILE for your own")
    if weights_file is not None:
        path = Path(weights_file).expanduser().resolve()
        if not path.is_file():
            raise UserError(f"the weights file {path} does not exist" if not path.exists()
                            else f"--weights {path} is not a file",
                            "pass --weights with a state dict saved by torch.save(model.state_dict(), FILE)")
        return StartingWeights("file", path.name, file_sha256(path)[:FILE_SHA256_PREFIX], str(path))
    if pretrained:
        enum = _torchvision_weights(model_name)
        return StartingWeights("torchvision", str(enum), _url_hash_prefix(enum.url))
    return None


def pretrained_cache_path(url: str) -> Path:
    """Where torch keeps a downloaded weights file: ``<torch hub dir>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _file_name(url)


def pretrained_weights_file(model_name: str) -> Path | None:
    """Where ``model_name``'s ImageNet weights go in the torch cache; None for a model that has none."""
    if model_name not in TORCHVISION_RESNETS:
        return None
    return pretrained_cache_path(_torchvision_weights(model_name).url)


def weights_state(model_name: str) -> WeightsState:
    """Whether ``--pretrained`` would work now, without asking the network.

    "cached": the file is in the torch cache (no network needed); "downloadable": the model has
    ImageNet weights that a run fetches if the network allows (else see
    :func:`pretrained_weights_file` for where to place them); "unavailable": the model has none.
    """
    path = pretrained_weights_file(model_name)
    if path is None:
        return "unavailable"
    return "cached" if path.is_file() else "downloadable"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _url_hash_prefix(url: str) -> str:
    match = _URL_HASH.search(_file_name(url))
    if match is None:  # every torchvision weights file has one; a missing one would leave nothing to check
        raise ValueError(f"torchvision weights URL without a hash in its file name: {url}")
    return match.group(1)


def _torchvision_weights(model_name: str, weights_name: str | None = None) -> WeightsEnum:
    if model_name not in TORCHVISION_RESNETS:
        raise UserError(f"{model_name} has no pretrained weights",
                        f"drop --pretrained, use {', '.join(TORCHVISION_RESNETS)}, or pass --weights FILE "
                        "with a state dict for this model")
    from torchvision import models

    if weights_name is None:
        return models.get_model_weights(model_name).DEFAULT
    try:
        enum = models.get_weight(weights_name)
    except (ValueError, KeyError, AttributeError) as exc:
        raise UserError(f"this torchvision ({_torchvision_version()}) has no weights {weights_name}, which the run "
                        "started from", "resume with the torchvision the run started with, or start a new run") from exc
    if type(enum) is not models.get_model_weights(model_name):
        raise UserError(f"the run records weights {weights_name}, which are not {model_name}'s",
                        "start a new run; the run's spec.json was changed by hand")
    return enum


def _torchvision_version() -> str:
    import torchvision

    return str(torchvision.__version__)


def _starting_state(weights: StartingWeights, model_name: str, log: LogFn | None) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict ``weights`` names, checked against the recorded sha256, and a label for messages."""
    if weights.source == "torchvision":
        enum = _torchvision_weights(model_name, weights.name)
        if _url_hash_prefix(enum.url) != weights.sha256:
            raise UserError(f"{weights.name} is another file in this torchvision ({_file_name(enum.url)}) than the run "
                            f"started from (sha256 {weights.sha256})",
                            "resume with the torchvision the run started with, or start a new run")
        path = pretrained_cache_path(enum.url)
        if not path.is_file():
            _download(enum.url, path, weights.sha256, log)
        if not file_sha256(path).startswith(weights.sha256):
            raise UserError(f"{path} is damaged: its sha256 does not start with {weights.sha256}, as its name says",
                            f"delete it; --pretrained fetches it again when the network allows (or copy a good "
                            f"one from {enum.url} there)")
        return _read_state_dict(path), path.name
    if weights.path is None:
        raise UserError("the run records a weights file without its path", "start a new run with --weights FILE")
    path = Path(weights.path)
    if not path.is_file():
        raise UserError(f"the weights file {path} that this run starts from is gone",
                        "put it back where it was, or start a new run")
    actual = file_sha256(path)[: len(weights.sha256)]
    if actual != weights.sha256:
        raise UserError(f"the weights file {path} changed since the run started (sha256 {actual}, the run recorded "
                        f"{weights.sha256})", "restore the file the run started from, or start a new run")
    return _read_state_dict(path), str(path)


def _download(url: str, path: Path, sha256_prefix: str, log: LogFn | None) -> None:
    """Fetch ``url`` into the torch cache with torch's own downloader (a progress bar on stderr)."""
    folder, name = path.parent, path.name
    offline_fix = (f"on a machine with internet, download {url} and copy it into {folder}; "
                   "or train without --pretrained")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise user_error_from_oserror(exc, folder) or UserError(
            f"cannot make the torch cache folder {folder} ({exc.strerror})",
            "set TORCH_HOME to a folder you can write, or pass --weights FILE") from exc
    if log is not None:
        log(f"fetching {name} (ImageNet weights) into {folder}")
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        # torch writes to a temporary name and renames when the hash matches: no half file is ever cached.
        torch.hub.download_url_to_file(url, str(path), sha256_prefix, progress=True)
    except urllib.error.HTTPError as exc:
        raise UserError(f"could not fetch {name}: the server answered HTTP {exc.code}; place it in {folder} "
                        "or pass --weights FILE", offline_fix) from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise UserError(f"no network to fetch {name}: place it in {folder} or pass --weights FILE",
                        offline_fix) from exc
    except RuntimeError as exc:  # torch's hash check
        raise UserError(f"the download of {name} arrived damaged ({exc})",
                        f"run the command again, or {offline_fix}") from exc
    except OSError as exc:
        translated = user_error_from_oserror(exc, folder)
        if translated is not None:
            raise translated from exc
        raise UserError(f"could not fetch {name} ({exc}): place it in {folder} or pass --weights FILE",
                        offline_fix) from exc
    finally:
        socket.setdefaulttimeout(previous_timeout)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A plain state dict, or one under "state_dict" or "model" (training checkpoints); tensors only."""
    fix = "pass a file saved with torch.save(model.state_dict(), FILE)"
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise user_error_from_oserror(exc, path.parent) or UserError(
            f"cannot read the weights file {path} ({exc.strerror or exc})", fix) from exc
    except Exception as exc:
        # Unpickling, zip and "unsupported global" errors all mean the same to a person: not a state dict.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"the weights file {path} is not a PyTorch state dict ({reason[:200]})", fix) from exc
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()):
        what = type(loaded).__name__ if not isinstance(loaded, Mapping) else "a dict that is not names -> tensors"
        raise UserError(f"the weights file {path} holds {what}, not a state dict", fix)
    state = dict(loaded)
    if all(key.startswith("module.") for key in state):  # saved from DataParallel
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _load_starting_state(model: nn.Module, state: Mapping[str, torch.Tensor], label: str, model_name: str,
                         replaced_layers: Mapping[str, str], log: LogFn | None) -> None:
    """Load ``state`` into ``model``; layers in ``replaced_layers`` whose shape differs stay new."""
    def replaced(key: str) -> str | None:
        return next((prefix for prefix in replaced_layers if key.startswith(prefix)), None)

    own = model.state_dict()
    usable: dict[str, torch.Tensor] = {}
    made_new: set[str] = set()
    problems: list[str] = []
    for key, tensor in state.items():
        target = own.get(key)
        if target is not None and target.shape == tensor.shape:
            usable[key] = tensor
        elif (prefix := replaced(key)) is not None:
            made_new.add(prefix)
        elif target is None:
            problems.append(f"{key} is not in {model_name}")
        else:
            problems.append(f"{key} is {tuple(tensor.shape)} there, {tuple(target.shape)} in {model_name}")
    for key in own:
        if key not in state and replaced(key) is None and not key.endswith("num_batches_tracked"):
            problems.append(f"{key} is missing")
    if problems or not usable:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise UserError(f"the weights in {label} do not fit {model_name}: {shown or 'no tensor matches'}",
                        f"pass weights saved from a {model_name} (torch.save(model.state_dict(), FILE)), or choose "
                        "the --model they were saved from")
    model.load_state_dict(usable, strict=False)
    if log is not None:
        news = ", ".join(f"{prefix.rstrip('.')} ({replaced_layers[prefix]})" for prefix in sorted(made_new))
        log(f"{model_name} starts from {label}" + (f"; made new: {news}" if news else ""))


def _build_user_model(spec: str, num_classes: int) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"cannot import {module_name!r} for model {spec!r}: {exc}",
                        "make sure the module is on PYTHONPATH (or installed) in the engine's environment") from exc
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise UserError(f"{module_name} has no callable {attribute!r}", "name a function or class: module:callable")
    model = factory(num_classes)
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec}({num_classes}) returned {type(model).__name__}, not a torch.nn.Module",
                        "the callable must return an nn.Module whose output has num_classes logits")
    return model
