"""A flagged sample's suggestion is never its given label: accepting it is a relabel, not a disguised keep."""

from __future__ import annotations

import numpy as np

from engine.detectors import DetectorInputs, DetectorResult


def flagged_suggestions_are_other_classes(result: DetectorResult, labels: np.ndarray) -> bool:
    return bool(result.flagged.any()) and not (result.suggested[result.flagged] == labels[result.flagged]).any()


def test_suggest_classes_takes_the_most_likely_other_class_for_flagged_samples() -> None:
    from engine.detectors import suggest_classes

    evidence = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 0, 1, 2])
    flagged = np.array([True, False, True, True])
    assert suggest_classes(evidence, labels, flagged).tolist() == [1, 0, 0, 0]  # unflagged: the argmax
    # Votes: a class nobody voted for is no suggestion.
    assert suggest_classes(evidence, labels, flagged, needs_evidence=True).tolist() == [1, 0, -1, -1]


def test_aum_and_cartography_suggest_another_class_for_a_low_margin_the_label_still_led() -> None:
    from engine.detectors import aum, cartography

    labels = np.array([0, 0, 1, 1])
    # Sample 0: its label led on average (0.5) but by a negative margin at most epochs: flagged.
    mean_probs = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    margin = np.array([[-1.0, -1.0, 0.5], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
    given_prob = mean_probs[np.arange(4), labels][:, None].repeat(3, axis=1)
    arrays = {"margin": margin, "mean_probs": mean_probs, "given_prob": given_prob}
    for detector in (aum, cartography):
        result = detector.detect(DetectorInputs(labels, 3, arrays=arrays))
        assert result.flagged.tolist() == [True, False, False, False], detector.__name__
        assert flagged_suggestions_are_other_classes(result, labels) and result.suggested[0] == 1
        assert result.suggested[1] == 0  # an unflagged sample keeps its most likely class


def test_ocl_suggests_the_most_frequent_other_confident_class() -> None:
    from engine.detectors import CONFIDENT_CLASS, ocl

    # Ten samples of class 0; five were confidently class 1 in the first of two epochs, class 0 in the second
    # (which weighs more): flagged ones, whose most frequent confident class is still their label.
    confident = np.zeros((10, 2), dtype=np.int16)
    confident[:5, 0] = 1
    labels = np.zeros(10, dtype=np.int64)
    result = ocl.detect(DetectorInputs(labels, 2, arrays={CONFIDENT_CLASS: confident}))
    assert result.flagged.sum() == 2
    assert flagged_suggestions_are_other_classes(result, labels) and (result.suggested[result.flagged] == 1).all()
    assert (result.suggested[~result.flagged] == 0).all()


def test_the_ensemble_suggests_another_class_or_none_for_what_it_flags() -> None:
    from engine.detectors import ensemble

    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.9, 0.1, 0.2, 0.3])
    flagged = np.array([True, True, False, False, True, False, False, False])
    ranking = np.argsort(-scores, kind="stable")
    # Member a flags 0, 1 and 4 but suggests their own labels for 0 and 4; member b suggests class 1 for 0.
    a = DetectorResult(scores, np.array([0, 1, 0, 0, 1, 1, 1, 1]), flagged, ranking,
                       summary={"estimated_noise_rate": 3 / 8})
    b = DetectorResult(scores, np.array([1, 1, 0, 0, 1, 1, 1, 1]), flagged, ranking,
                       summary={"estimated_noise_rate": 3 / 8})
    result = ensemble.detect(DetectorInputs(labels, 2, earlier={"a": a, "b": b}))
    assert result.flagged.tolist() == flagged.tolist()
    assert flagged_suggestions_are_other_classes(result, labels)
    assert result.suggested[[0, 1, 4]].tolist() == [1, 1, -1]  # 4: no member suggests another class
