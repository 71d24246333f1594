"""Label-issue detectors: each turns per-sample evidence into a score in [0, 1].

Every detector has the same shape: a function ``detect(inputs) -> DetectorResult``
in its own module beside this one. ``inputs`` carries the observed labels and
whatever evidence the detector says it ``requires`` (out-of-sample
probabilities, ``oof_probs``, for confident learning; per-epoch training
``dynamics`` for AUM and cartography). The audit job gathers the evidence once and runs every chosen
detector on it; a new detector is a new file plus one line in
:data:`DETECTORS`.

Conventions shared by all detectors (arrays are indexed by sample id):

- ``scores``: (N,) float in [0, 1], higher = more likely mislabeled;
- ``suggested``: (N,) int, a suggested class or -1 where there is none; for a flagged sample
  never its given label (the most likely other class, :func:`suggest_classes`): accepting a
  flagged sample's suggestion is a relabel, never a disguised keep;
- ``flagged``: (N,) bool, the detector's own decision of which are issues;
- ``ranking``: (N,) int, every sample id, most suspect first;
- ``extras``: named arrays the run folder keeps (``<name>.npy``);
- ``summary``: small JSON-able facts (counts, estimated noise rate).

This package imports only numpy; a detector's heavy imports (cleanlab, torch)
happen when it is loaded, so the GUI can list detectors cheaply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.errors import UserError


@dataclass(frozen=True)
class DetectorInputs:
    """The evidence a detector may use.

    Attributes
    ----------
    labels : np.ndarray of shape (N,)
        Observed (possibly noisy) labels, ints in 0..K-1.
    num_classes : int
        K, the number of classes.
    pred_probs : np.ndarray of shape (N, K), optional
        Out-of-sample predicted probabilities (K-fold cross-validation).
    arrays : mapping of str to np.ndarray
        Further per-sample evidence by name (training dynamics, ...).
    earlier : mapping of str to DetectorResult
        Results of the detectors that ran before this one (for ensembles).
    settings : mapping of str to Any
        Choices the audit made for its detectors (``td_lstm_weights``: the weights file to read).
    """

    labels: np.ndarray
    num_classes: int
    pred_probs: np.ndarray | None = None
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)
    earlier: Mapping[str, DetectorResult] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DetectorResult:
    """What a detector found; see the module docstring for the array conventions."""

    scores: np.ndarray  # (N,) float64 in [0, 1]
    suggested: np.ndarray  # (N,) int64, -1 = no suggestion
    flagged: np.ndarray  # (N,) bool
    ranking: np.ndarray  # (N,) int64, a permutation of 0..N-1, most suspect first
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.scores)
        for name in ("suggested", "flagged", "ranking"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, scores has {n}")
        if n and (np.nanmin(self.scores) < 0 or np.nanmax(self.scores) > 1 or np.isnan(self.scores).any()):
            raise ValueError("detector scores must lie in [0, 1]")

    @property
    def num_flagged(self) -> int:
        return int(np.count_nonzero(self.flagged))

    @classmethod
    def from_flagged(cls, scores: np.ndarray, suggested: np.ndarray, flagged: np.ndarray, suspicion_order: np.ndarray,
                     extras: dict[str, np.ndarray], summary: dict[str, Any]) -> DetectorResult:
        """The result of a detector that flags a set: the flagged samples ranked first, by ``suspicion_order`` (N,)
        ascending (most suspect first; ties by id), then the rest by score; ``n_flagged`` and ``flagged_rate``
        lead the summary."""
        flagged_ids = np.flatnonzero(flagged)
        flagged_ids = flagged_ids[np.argsort(suspicion_order[flagged_ids], kind="stable")]
        n = len(scores)
        return cls(scores=scores, suggested=suggested, flagged=flagged,
                   ranking=ranking_flagged_first(flagged_ids, scores), extras=extras,
                   summary={"n_flagged": int(flagged.sum()), "flagged_rate": float(flagged.mean()) if n else 0.0,
                            **summary})


Detector = Callable[[DetectorInputs], DetectorResult]


@dataclass(frozen=True)
class DetectorInfo:
    """A registered detector: its short name, a title for people, what evidence it needs (:data:`EVIDENCE`)."""

    name: str
    title: str
    requires: tuple[str, ...]
    entry: str  # "module:function", imported on first use
    combines: bool = False  # reads the results of the detectors that ran before it (DetectorInputs.earlier)
    issue: str = "label"  # the kind of issue it finds (ISSUE_KINDS): only "label" detectors rank the review
    in_ensemble: bool = True  # the ensemble combines it (label detectors only, and only where that helps)
    # Evidence that, when another detector of the audit reads it, keeps this one out of the ensemble: the
    # same kind of voice, heard better there (cl's short K-fold models beside the dynamics run).
    ensemble_yields_to: tuple[str, ...] = ()

    def load(self) -> Detector:
        module_name, _, function_name = self.entry.partition(":")
        function: Detector = getattr(importlib.import_module(module_name), function_name)
        return function


# Evidence a detector may require; the audit trains once per kind of evidence asked for, not once per detector.
OOF_PROBS = "oof_probs"  # out-of-fold probabilities from K-fold cross-validation: DetectorInputs.pred_probs
DYNAMICS = "dynamics"  # per-epoch training dynamics of one run over all training samples (recorders.py)
# The arrays (indexed by sample id) that carry the dynamics evidence in DetectorInputs.arrays:
# margin (N, E) assigned-logit margins, given_prob (N, E) probabilities of the label trained on,
# mean_probs (N, K) each class's probability averaged over epochs, early_probs (N, K) averaged over the
# second quarter of training (how many are mislabeled: early_learning.py).
DYNAMICS_ARRAYS = ("margin", "given_prob", "mean_probs", "early_probs")
# confident_class (N, E) int: each sample's confident class in its training batch per epoch, -1 for none
# (online confident learning's per-batch confident joint), recorded in the same run as the dynamics.
CONFIDENT_CLASS = "confident_class"
# embeddings (N, D) of one source, as its cached neighbour index (engine/embeddings/evidence.py): the arrays
# neighbor_ids (N, k) int64 sample ids, nearest first; neighbor_sims (N, k) their cosine similarities; sample_id (N,).
EMBEDDINGS = "embeddings"
NEIGHBOR_ARRAYS = ("neighbor_ids", "neighbor_sims", "sample_id")
EVIDENCE = (OOF_PROBS, DYNAMICS, CONFIDENT_CLASS, EMBEDDINGS)
# What a detector finds: a wrong label; a copy of another sample; a sample unlike any other.
ISSUE_KINDS = ("label", "duplicate", "outlier")

DETECTORS: dict[str, DetectorInfo] = {
    info.name: info
    for info in (
        # Beside a dynamics run cl stays out of the ensemble: its K-fold models read the same labels with
        # a model trained shorter, and averaging their ranking in lowered the ensemble's (README, "cl and
        # the ensemble").
        DetectorInfo("cl", "Confident learning (cleanlab, K-fold probabilities)", (OOF_PROBS,),
                     "engine.detectors.confident_learning:detect", ensemble_yields_to=(DYNAMICS, CONFIDENT_CLASS)),
        DetectorInfo("aum", "Area under the margin (training dynamics of one run)", (DYNAMICS,),
                     "engine.detectors.aum:detect"),
        DetectorInfo("cartography", "Dataset cartography: confidence over training (one run)", (DYNAMICS,),
                     "engine.detectors.cartography:detect"),
        DetectorInfo("td_lstm", "LSTM over training dynamics, pretrained on synthesized noise (one run)",
                     (DYNAMICS,), "engine.detectors.td_lstm:detect"),
        DetectorInfo("ocl", "Online confident learning: off the per-batch confident joint (one run)",
                     (CONFIDENT_CLASS,), "engine.detectors.ocl:detect"),
        DetectorInfo("knn", "Label disagreement among the nearest neighbours in embedding space (SimiFeat)",
                     (EMBEDDINGS,), "engine.detectors.knn:detect"),  # in the ensemble: README, "knn beside the ensemble"
        DetectorInfo("near_duplicate", "Near-duplicates: another sample's embedding almost the same",
                     (EMBEDDINGS,), "engine.detectors.embedding_issues:near_duplicates", issue="duplicate",
                     in_ensemble=False),
        DetectorInfo("outlier", "Outliers: far from their k-th nearest neighbour in embedding space",
                     (EMBEDDINGS,), "engine.detectors.embedding_issues:outliers", issue="outlier", in_ensemble=False),
        DetectorInfo("ensemble", "Ensemble: rank average of the other detectors (cl only where no training run is chosen)", (),
                     "engine.detectors.ensemble:detect", combines=True),
    )
}


REVIEW_DETECTORS = ("ensemble", "cl")  # the detector that ranks the review by default: first found wins


def review_detector(detectors: Sequence[str]) -> str:
    """The detector of an audit whose ranking and suggestions the review shows, and the export writes, by default.

    The ensemble when the audit ran it, else confident learning, else the audit's first detector of
    label issues, else its first (``detectors``: the names it has scores from, never empty).
    """
    labels = [name for name in detectors if name not in DETECTORS or DETECTORS[name].issue == "label"]
    return next((name for name in REVIEW_DETECTORS if name in detectors), (labels or list(detectors))[0])


def ensemble_members(names: Sequence[str]) -> list[str]:
    """Which of ``names`` (detectors that ran) the ensemble combines: label detectors marked ``in_ensemble``,
    less those that yield to evidence another of ``names`` reads (``DetectorInfo.ensemble_yields_to``)."""
    label_detectors = [name for name in names if name != "ensemble" and (
        name not in DETECTORS or (DETECTORS[name].issue == "label" and DETECTORS[name].in_ensemble))]

    def yields(name: str) -> bool:
        if name not in DETECTORS or not DETECTORS[name].ensemble_yields_to:
            return False
        read_by_others = {kind for other in label_detectors if other != name and other in DETECTORS
                          for kind in DETECTORS[other].requires}
        return bool(read_by_others & set(DETECTORS[name].ensemble_yields_to))

    return [name for name in label_detectors if not yields(name)]


def available_evidence(inputs: DetectorInputs) -> set[str]:
    """The kinds of evidence ``inputs`` carries, plus the names of its arrays."""
    available = set(inputs.arrays)
    if inputs.pred_probs is not None:
        available.add(OOF_PROBS)
    if all(name in inputs.arrays for name in DYNAMICS_ARRAYS):
        available.add(DYNAMICS)
    if all(name in inputs.arrays for name in NEIGHBOR_ARRAYS):
        available.add(EMBEDDINGS)
    return available


def required_evidence(detectors: list[DetectorInfo]) -> list[str]:
    """The evidence ``detectors`` need together, each kind once, in :data:`EVIDENCE` order."""
    wanted = {name for info in detectors for name in info.requires}
    return [name for name in EVIDENCE if name in wanted] + sorted(wanted - set(EVIDENCE))


def training_runs(detectors: list[DetectorInfo]) -> tuple[bool, bool]:
    """(K-fold models, dynamics run): which of the two trainings ``detectors`` need together.

    Embeddings are read (or computed by a pretrained backbone), never trained, so they count as neither.
    """
    evidence = required_evidence(detectors)
    return OOF_PROBS in evidence, any(name not in (OOF_PROBS, EMBEDDINGS) for name in evidence)


def uses_dynamics_run(names: str | list[str]) -> bool:
    """Whether the detectors ``names`` (as ``--detectors`` takes them) need a dynamics run."""
    return training_runs(parse_detectors(names))[1]


def get_detector(name: str) -> DetectorInfo:
    """The registered detector called ``name``; a UserError naming the known ones otherwise."""
    try:
        return DETECTORS[name]
    except KeyError:
        raise UserError(f"unknown detector {name!r}", f"use one of: {', '.join(DETECTORS)}, or all") from None


def parse_detectors(names: str | list[str]) -> list[DetectorInfo]:
    """Detectors from a comma-separated list (``"cl,aum"``) or a list of names, duplicates dropped.

    ``all`` names every registered detector.
    """
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    names = [known for name in names for known in (list(DETECTORS) if name == "all" else [name])]
    chosen: list[DetectorInfo] = []
    for name in names:
        if name and all(info.name != name for info in chosen):
            chosen.append(get_detector(name))
    if not chosen:
        raise UserError("no detector chosen", f"name at least one of: {', '.join(DETECTORS)}, or all")
    if all(info.combines for info in chosen) or (
            any(info.combines for info in chosen) and not ensemble_members([info.name for info in chosen])):
        combining = next(info.name for info in chosen if info.combines)
        raise UserError(f"{combining} combines other detectors of label issues and none was chosen",
                        f"name it with others, e.g. cl,aum,{combining}, or all")
    # A combining detector runs after those it combines, wherever it was named.
    return sorted(chosen, key=lambda info: info.combines)


def suggest_classes(evidence: np.ndarray, labels: np.ndarray, flagged: np.ndarray, *,
                    needs_evidence: bool = False) -> np.ndarray:
    """(n,) int64: per sample the class with the most ``evidence`` (n, K), for a flagged one the most likely
    class other than its given label (the detector says that label is wrong).

    ``evidence``: probabilities, or counts and weights of votes; with ``needs_evidence`` a class needs
    some (above 0) to be suggested, else -1 (no other class was ever voted for).
    """
    evidence = np.array(evidence, dtype=np.float64, copy=True)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.flatnonzero(np.asarray(flagged, dtype=bool))
    rows = rows[(labels[rows] >= 0) & (labels[rows] < evidence.shape[1])]
    evidence[rows, labels[rows]] = -np.inf
    if not evidence.shape[1]:
        return np.full(len(evidence), -1, dtype=np.int64)
    best = evidence.argmax(axis=1)
    has = evidence.max(axis=1) > (0.0 if needs_evidence else -np.inf)
    return np.where(has, best, -1).astype(np.int64)


def ranking_flagged_first(flagged_order: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Every sample id: the flagged ones in the detector's own order, then the rest by score.

    Parameters
    ----------
    flagged_order : np.ndarray of shape (F,)
        Ids of the flagged samples, most suspect first.
    scores : np.ndarray of shape (N,)
        Scores of all samples; the unflagged ones are ordered by it, descending
        (ties keep id order, so the ranking is deterministic).

    Returns
    -------
    np.ndarray of shape (N,)
        A permutation of 0..N-1.
    """
    flagged_order = np.asarray(flagged_order, dtype=np.int64)
    rest = np.ones(len(scores), dtype=bool)
    rest[flagged_order] = False
    rest_ids = np.flatnonzero(rest)
    rest_ids = rest_ids[np.argsort(-scores[rest_ids], kind="stable")]
    return np.concatenate([flagged_order, rest_ids])
