"""Telling a gain from seed noise: mean +- std over seeds and the paired difference with its t-interval.

Two models trained with the same seed share their initial weights, batch order and
augmentation; their accuracies move together from seed to seed. So a comparison is
made per seed (a paired difference), and the mean of those differences gets a
Student-t confidence interval. An interval that contains zero is "no measurable
change": the data cannot tell the difference from the noise of the seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

NO_MEASURABLE_CHANGE = "no measurable change"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof=1; 0.0 for one value) of ``n`` values."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-seed differences ``a - b`` with its confidence interval.

    ``low``/``high`` are None with fewer than two pairs: one pair has no spread, so no
    interval, and nothing can be told from noise.
    """

    mean: float
    std: float
    n: int
    low: float | None
    high: float | None
    confidence: float = CONFIDENCE

    @property
    def measurable(self) -> bool:
        """True when the interval excludes zero."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        """``"gain"``, ``"loss"`` or :data:`NO_MEASURABLE_CHANGE`."""
        if not self.measurable:
            return NO_MEASURABLE_CHANGE
        return "gain" if self.mean > 0 else "loss"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measurable": self.measurable, "verdict": self.verdict}


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("spread of no values")
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return Spread(mean, std, n)


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t  # scipy comes with scikit-learn

    return float(t.ppf(probability, df))


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> PairedDifference:
    """``a[i] - b[i]`` per seed i: their mean, std and two-sided t-interval at ``confidence``."""
    if len(a) != len(b):
        raise ValueError(f"paired values of unequal length: {len(a)} and {len(b)}")
    differences = [x - y for x, y in zip(a, b, strict=True)]
    summary = spread(differences)
    if summary.n < 2:
        return PairedDifference(summary.mean, summary.std, summary.n, None, None, confidence)
    half = t_quantile(0.5 + confidence / 2, summary.n - 1) * summary.std / math.sqrt(summary.n)
    return PairedDifference(summary.mean, summary.std, summary.n, summary.mean - half, summary.mean + half, confidence)


def difference_from_dict(values: dict[str, Any]) -> PairedDifference:
    """The inverse of :meth:`PairedDifference.to_dict` (run summaries are JSON)."""
    return PairedDifference(float(values["mean"]), float(values["std"]), int(values["n"]),
                            None if values.get("low") is None else float(values["low"]),
                            None if values.get("high") is None else float(values["high"]),
                            float(values.get("confidence", CONFIDENCE)))


def points(value: float) -> str:
    """An accuracy difference (a fraction) in percentage points, signed: ``+1.2``."""
    return f"{100 * value:+.1f}"


def describe_difference(difference: PairedDifference) -> str:
    """One line a person reads: the mean difference, its interval, and whether it means anything.

    ``+1.2 pts (95% interval +0.4 to +2.0, 3 paired seeds)``, or
    ``no measurable change (+0.3 pts, 95% interval -0.9 to +1.5, 3 paired seeds)``.
    """
    seeds = f"{difference.n} paired seed{'s' if difference.n != 1 else ''}"
    if difference.low is None or difference.high is None:
        detail = f"{points(difference.mean)} pts, {seeds}: no interval without a second seed"
    else:
        detail = (f"{points(difference.mean)} pts, {difference.confidence:.0%} interval "
                  f"{points(difference.low)} to {points(difference.high)}, {seeds}")
    if difference.measurable:
        return f"{points(difference.mean)} pts ({detail.split(', ', 1)[1]})"
    return f"{NO_MEASURABLE_CHANGE} ({detail})"


def describe_spread(values: Spread) -> str:
    """``81.3% +- 0.4`` (percent, the std in points)."""
    return f"{100 * values.mean:.1f}% ± {100 * values.std:.1f}"
