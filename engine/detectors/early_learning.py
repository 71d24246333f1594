"""How many samples of a dynamics run are mislabeled: confident learning on its early-learning predictions.

Confident learning (cleanlab) estimates the number of label issues from probabilities the model
did not fit to the given labels: out-of-sample ones, which a K-fold audit has and one training
run has not. By the end of training a network has memorised many wrong labels, so its own
predictions (or their average over all epochs) make the estimate far too low. But deep networks
fit the clean majority *before* they memorise the noise (Arpit et al. 2017, "A closer look at
memorization"; Liu et al. 2020, "Early-learning regularization"): past the warm-up and before
memorisation their predictions behave like out-of-sample ones. So the estimate reads the
probabilities averaged over the **second quarter of training** (epochs E/4 to E/2; the second
half in a run too short to memorise, :func:`early_learning_window`; every epoch when a run has
fewer than :data:`MIN_EPOCHS_FOR_WINDOW`).

Measured (the product's small CNN, 50 epochs). The window was chosen on CIFAR-10N, 1,000
images per class, where the true count 4,105 on ``worse_label`` and 910 on ``aggre_label`` are
estimated 4,301 and 1,044 (+5%, +15%); averaged over all epochs 3,587 and 584 (-13%, -36%);
the share with AUM < 0 was 5,091 and 2,358. Checked apart from that benchmark on synthesized
noise over CIFAR-10 train images 3000-3599 of each class (6,000 images, as the counts below
show; a larger set of recordings than the shipped td_lstm weights were trained on, which use
images 3000-3099 and three of these settings: resources/td_lstm.md): there it errs high, by
23% to 47% (symmetric 0.2 and 0.4, asymmetric 0.3, instance 0.2 and 0.4: 1,760 for 1,200,
3,109 for 2,400, 2,217 for 1,800, 1,659 for 1,216, 3,052 for 2,423), where the all-epoch
average errs low by 2% to 31%. Random synthetic labels are memorised later than human mistakes,
so the early window sees a weaker model there. Erring high suits a review: a person looks at a
few more samples rather than missing mislabeled ones.

The estimate is made per given class (the rows of cleanlab's calibrated confident joint), and a
detector flags, in each class, that many of its own highest scores: confident learning's *prune
by class*. Measured on CIFAR-10N ``worse_label``, 1,000 images per class (``small_cnn``, 45
epochs), AUM's F1 at the same total count: 0.777 with one line over all classes, 0.784 per
class; on a validation slice of other images (1,000 to 1,999 of each class, never benchmarked)
0.766 and 0.774, and with the true per-class counts 0.787 against 0.761 for the true total
under one line. With ``cnn7``, the default model since, the estimate is 4,245 for 4,105 on
``worse_label`` and 1,023 for 910 on ``aggre_label`` (+3%, +12%).

The dynamics keep every class's probability while K <= ``TD_WIDTH`` (10); above that the td array
keeps the given label and the strongest others, and the mass left over is shared evenly by the
classes not kept (an approximation: those classes are the weak ones for that sample).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MIN_EPOCHS_FOR_WINDOW = 8  # with fewer, a quarter of training is one or two noisy epochs: read them all
MIN_EPOCHS_TO_MEMORISE = 30  # with fewer passes over each sample the run never leaves early learning


def early_learning_window(epochs: int) -> slice:
    """The epochs whose predictions stand in for out-of-sample ones.

    The second quarter of training, when the run is long enough to memorise the wrong labels later;
    the second half when it is not (fewer than :data:`MIN_EPOCHS_TO_MEMORISE` epochs: a large dataset
    under the thorough preset's image-steps, 16 epochs at 25,000 samples, 8 at 50,000). Memorising a wrong label
    takes many passes over that sample, so a short run is early learning to its end (its accuracy
    against the truth still rises in the last epoch), and its first quarter is a model still too
    weak to tell. Measured (``cnn7``, float32), true rate / second quarter / second half: the 50,000
    CIFAR-10N ``worse_label`` images in 9 epochs 0.402 / 0.50 / 0.42; 10,000 of them in 12 epochs
    (the fast preset) 0.41 / 0.56 / 0.48, ``aggre_label`` 0.091 / 0.30 / 0.16; 25,000 in 18 epochs
    0.406 / 0.46 / 0.40. Where the run is 45 epochs the second quarter stays (10,000 ``aggre_label``:
    0.097 for 0.091; the second half 0.028). The threshold lies between the 18 and 45 epochs
    measured; runs in between were not.
    """
    if epochs < MIN_EPOCHS_FOR_WINDOW:
        return slice(0, epochs)
    if epochs < MIN_EPOCHS_TO_MEMORISE:
        return slice(epochs // 2, epochs)
    return slice(epochs // 4, epochs // 2)


def class_probs_from_td(td: np.ndarray, td_classes: np.ndarray, num_classes: int, window: slice) -> np.ndarray:
    """(n, K) float32: every class's probability averaged over ``window``, from td (n, W, E) and its classes (n, W).

    Classes the td array does not keep (K > W) share the mass left over evenly.
    """
    td = np.asarray(td)
    n, width, _ = td.shape
    kept = np.asarray(td[:, :, window], dtype=np.float32).mean(axis=2)  # (n, W)
    classes = np.asarray(td_classes, dtype=np.int64)
    probs = np.zeros((n, num_classes), dtype=np.float32)
    if num_classes > width:
        leftover = np.clip(1.0 - kept.sum(axis=1), 0.0, 1.0) / (num_classes - width)
        probs += leftover[:, None]
    valid = classes >= 0  # a td narrower than K pads with class -1
    rows = np.broadcast_to(np.arange(n)[:, None], classes.shape)
    probs[rows[valid], classes[valid]] = kept[valid]
    return probs


def estimated_issue_counts(labels: np.ndarray, early_probs: np.ndarray) -> np.ndarray:
    """(K,) int64: confident learning's calibrated estimate of how many labels of each given class are wrong.

    The row sums, less the diagonal, of cleanlab's calibrated confident joint: row ``i`` counts the
    samples labeled ``i`` whose true class is estimated to be another. Their total is
    cleanlab's ``num_label_issues`` (``off_diagonal_calibrated``) up to rounding.
    """
    from cleanlab.count import compute_confident_joint

    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(early_probs, dtype=np.float64)
    counts = np.zeros(probs.shape[1], dtype=np.int64)
    present = np.unique(labels)
    if len(present) < 2:  # cleanlab needs two classes; one class has no off-diagonal to estimate
        return counts
    # cleanlab wants labels 0..K'-1 with every class present: drop absent classes' columns, renumber.
    remap = np.full(probs.shape[1], -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    probs = probs[:, present]
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    joint = compute_confident_joint(remap[labels], probs, calibrate=True)
    off_diagonal = joint.sum(axis=1) - np.diag(joint)
    counts[present] = np.rint(np.clip(off_diagonal, 0, None)).astype(np.int64)
    return counts


def top_scores(scores: np.ndarray, count: int) -> np.ndarray:
    """(n,) bool: the ``count`` highest scores (ties by id)."""
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:max(0, count)]] = True
    return flagged


def top_scores_per_class(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray,
                         tiebreak: np.ndarray | None = None) -> np.ndarray:
    """(n,) bool: within each given class ``k``, its ``counts[k]`` highest scores (ties: higher ``tiebreak``, then id).

    Confident learning's *prune by class* (Northcutt et al. 2021), with the detector's score as the
    order: a class's samples compete only with each other, because a score's scale differs by
    class (hard classes have lower margins for right and wrong labels alike), so one global line
    over-flags the hard classes and misses the wrong labels of the easy ones.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    ties = np.zeros(len(scores)) if tiebreak is None else np.asarray(tiebreak, dtype=np.float64)
    flagged = np.zeros(len(scores), dtype=bool)
    for label, count in enumerate(np.asarray(counts, dtype=np.int64)):
        members = np.flatnonzero(labels == label)
        flagged[members[np.lexsort((-ties[members], -scores[members]))[:max(0, int(count))]]] = True
    return flagged


EARLY_PROBS = "early_probs"  # the DetectorInputs.arrays name of the (N, K) early-learning probabilities
ESTIMATED_BY = ("confident learning on the predictions of the second quarter of training (early learning), "
                "per given class")


def flag_estimated_count(arrays: Mapping[str, np.ndarray], labels: np.ndarray, scores: np.ndarray,
                         own_rule: np.ndarray, own_rule_text: str) -> tuple[np.ndarray, dict[str, object]]:
    """(flagged, summary facts): in each given class, the early-learning estimate's count of its highest scores.

    ``own_rule`` is the detector's own parameter-free line (AUM < 0, ...): kept in the summary for
    comparison, and used alone when the evidence has no early-learning probabilities (a run recorded
    before they were kept).
    """
    n = len(scores)
    own: dict[str, object] = {"own_rule": own_rule_text, "n_own_rule": int(np.count_nonzero(own_rule))}
    if EARLY_PROBS not in arrays:
        return own_rule, {**own, "estimated_noise_rate": float(own_rule.mean()) if n else 0.0,
                          "estimated_by": f"share of samples with {own_rule_text}"}
    counts = estimated_issue_counts(labels, arrays[EARLY_PROBS])
    count = int(counts.sum())
    return top_scores_per_class(scores, labels, counts), {
        **own, "estimated_noise_rate": count / n if n else 0.0, "estimated_by": ESTIMATED_BY,
        "estimated_per_class": counts.tolist()}
