"""Robust-training methods, found by name.

A method is a :class:`~engine.training.hooks.Method` subclass in a file of its own
beside this one, plus one :class:`MethodInfo` line in :data:`METHODS`. Its options
are a dataclass whose fields (with the seed's defaults) become ``--option key=value``
on the command line; the run spec records ``{"method": name, "options": {...}}``, so
``retrain``, ``compare`` and ``--resume`` all rebuild the same method from the spec.

A method is built for one model by :func:`build_method` with a :class:`MethodContext`:
what it may know about the data beyond its training batches (the trusted set for the
meta-learning methods, the truth for the upper bound). This package imports only the
standard library and numpy, so the GUI can list methods and their options cheaply;
a method's module (and torch) loads when the method is built.

``seeds/<name>.md`` in the docstrings names the design document (beside the project, never
needed to run it) that specifies a method.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import UserError

if TYPE_CHECKING:
    from engine.training.data import ImageBatches
    from engine.training.hooks import Method


@dataclass(frozen=True)
class MethodContext:
    """What a method may use besides its batches. Arrays are indexed by sample id unless named ``*_ids``.

    Attributes
    ----------
    num_classes : K.
    train_ids : (n,) the ids the model trains on.
    labels : (N,) the training targets (given labels with the person's decisions applied).
    data : the batch server over the decoded-image cache (for trusted batches).
    seed : the run's seed; a method's own randomness derives from it.
    trusted_ids, trusted_labels : (t,) the trusted set and its labels, when the method needs one.
    true_labels : (N,) the truth, only where it is known and the method is the upper bound.
    image_kind : "photo" or "digits" (the demo): some seeds give defaults per kind of data.
    suspect_scores, suggested : (N,) an audit detector's scores (higher = more likely mislabeled) and
        suggested classes (-1: none), for ``prune``; see engine.methods.prune.audit_evidence.
    """

    num_classes: int
    train_ids: np.ndarray
    labels: np.ndarray
    data: ImageBatches | None = None
    seed: int = 0
    trusted_ids: np.ndarray | None = None
    trusted_labels: np.ndarray | None = None
    true_labels: np.ndarray | None = None
    image_kind: str = "photo"
    suspect_scores: np.ndarray | None = None
    suggested: np.ndarray | None = None


@dataclass(frozen=True)
class MethodInfo:
    """One registered method: where it lives and what it needs."""

    name: str
    module: str  # engine.methods.<module>, defining ``method_class`` and ``options_class``
    method_class: str
    options_class: str | None
    summary: str
    needs_trusted: bool = False  # meta-learning methods: a clean set to learn from
    needs_truth: bool = False  # the upper bound: only where the truth is known

    def load(self) -> tuple[type[Method], type[Any] | None]:
        module = importlib.import_module(f"engine.methods.{self.module}")
        options = getattr(module, self.options_class) if self.options_class else None
        return getattr(module, self.method_class), options


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("ce", "ce", "CrossEntropy", None, "plain cross-entropy on the cleaned labels"),
        MethodInfo("mlc", "mlc", "MetaLabelCorrection", "MLCOptions",
                   "meta label correction: a network learns from the trusted set to correct labels", needs_trusted=True),
        MethodInfo("prune", "prune", "Prune", "PruneOptions",
                   "remove (or relabel) the most suspect samples of an audit, then train"),
        MethodInfo("l2rw", "l2rw", "LearningToReweight", "L2RWOptions",
                   "learning to reweight examples by a trusted batch's look-ahead gradient", needs_trusted=True),
        MethodInfo("meta_mixup", "meta_mixup", "MetaMixup", "MetaMixupOptions",
                   "labels mixed with the model's prediction by a trusted look-ahead (hard or soft)", needs_trusted=True),
        MethodInfo("alternating", "alternating", "AlternatingReweightMixup", "AlternatingOptions",
                   "reweighting and mixup labels on alternate steps (the seed's proposal)", needs_trusted=True),
        MethodInfo("upper_bound", "upper_bound", "UpperBound", "UpperBoundOptions",
                   "trains on the true labels: the bound for every method (benchmarks only)", needs_truth=True),
        MethodInfo("sln", "sln", "StochasticLabelNoise", "SLNOptions",
                   "stochastic label noise: Gaussian noise added to the one-hot targets"),
        MethodInfo("sln_mo", "sln", "SLNMomentum", "SLNMomentumOptions",
                   "stochastic label noise, ending with the momentum (weight-averaged) model"),
        MethodInfo("sln_mo_lc", "sln", "SLNMomentumCorrection", "SLNCorrectionOptions",
                   "stochastic label noise + momentum model, whose predictions correct the labels late in training"),
        MethodInfo("ocl", "ocl", "OnlineConfidentLearning", "OCLOptions",
                   "online confident learning: cross-entropy plus per-class soft targets learned each epoch"),
        MethodInfo("mixgen", "mixgen", "MixGen", "MixGenOptions",
                   "MixGen: a share of each batch becomes image mixtures that keep their own labels"),
    )
}


def method_info(name: str) -> MethodInfo:
    try:
        return METHODS[name]
    except KeyError:
        raise UserError(f"unknown method {name!r}", f"choose one of: {', '.join(METHODS)}") from None


def option_fields(name: str) -> list[dataclasses.Field[Any]]:
    """The options a method takes, with their defaults and help (``field.metadata['help']``)."""
    _, options = method_info(name).load()
    return list(dataclasses.fields(options)) if options else []


def _convert(method: str, field: dataclasses.Field[Any], text: Any) -> Any:
    if not isinstance(text, str):
        return text  # already typed (from a run spec)
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    try:
        if kind == "bool":
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind.startswith("float | None") or kind.startswith("int | None"):
            return None if text.lower() in ("none", "") else (float(text) if kind.startswith("float") else int(text))
    except ValueError:
        raise UserError(f"method {method}: option {field.name}={text!r} is not a valid {kind}",
                        f"give {field.name} as a {kind}, e.g. --option {field.name}={field.default!r}") from None
    return text


def parse_options(method: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Validated options of ``method``: its defaults, overridden by ``given`` (strings from the CLI or typed values)."""
    known = {field.name: field for field in option_fields(method)}
    unknown = sorted(set(given) - set(known))
    if unknown:
        listing = ", ".join(known) or "none"
        raise UserError(f"method {method} has no option {', '.join(unknown)}", f"its options are: {listing}")
    _, options_class = method_info(method).load()
    if options_class is None:
        return {}
    values = {key: _convert(method, known[key], value) for key, value in given.items()}
    return dataclasses.asdict(options_class(**values))


def split_option_args(pairs: list[str] | None) -> dict[str, str]:
    """``["sigma=0.5", "alpha=1"]`` -> ``{"sigma": "0.5", "alpha": "1"}``."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {pair!r} is not key=value", "write it as --option sigma=0.5")
        result[key.strip().replace("-", "_")] = value.strip()
    return result


def build_method(name: str, options: Mapping[str, Any], context: MethodContext) -> Method:
    """A fresh method for one model. ``options`` as returned by :func:`parse_options`."""
    info = method_info(name)
    method_class, options_class = info.load()
    if info.needs_trusted and (context.trusted_ids is None or len(context.trusted_ids) == 0):
        raise UserError(f"method {name} learns from a trusted set, and there is none",
                        "review some samples (kept or relabeled samples are trusted), or pass "
                        "--trusted-per-class N or --trusted-csv FILE")
    if info.needs_truth and context.true_labels is None:
        raise UserError(f"method {name} trains on the true labels, and this project does not know them",
                        "use it only on a dataset whose truth is known (a benchmark)")
    if options_class is None:
        return method_class(context)  # type: ignore[call-arg]
    return method_class(options_class(**parse_options(name, options)), context)  # type: ignore[call-arg]
