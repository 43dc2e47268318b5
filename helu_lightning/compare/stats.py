"""Statistics of a comparison: mean and sample standard deviation over seeds, and the paired difference
against a baseline over the seeds both have, with a 95% t confidence interval and a paired t-test's p-value."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

__all__ = ["PAIRED_TEST", "Paired", "mean_std", "paired_difference"]

PAIRED_TEST = "paired t-test (scipy.stats.ttest_rel, two-sided)"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; nan for fewer than two values)."""
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Paired:
    """Treatment minus baseline over ``n`` shared seeds: mean difference, its 95% CI and the p-value."""

    n: int
    mean: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The 95% interval excludes zero (equivalently p < 0.05)."""
        return self.low > 0 or self.high < 0


def paired_difference(treatment: Mapping[int, float], baseline: Mapping[int, float],
                      confidence: float = 0.95) -> Paired:
    """Differences on the seeds both arms finished: mean +- t(n-1) * sd / sqrt(n), and the paired t-test.

    All differences equal: the interval is that one value and p is 1 when it is zero, else 0 (no spread).
    """
    seeds = sorted(set(treatment) & set(baseline))
    differences = [treatment[s] - baseline[s] for s in seeds]
    n = len(differences)
    if n < 2:
        mean = differences[0] if differences else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan)
    mean, sd = mean_std(differences)
    if sd == 0:
        return Paired(n, mean, mean, mean, 1.0 if mean == 0 else 0.0)
    half = scipy_stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    p_value = float(scipy_stats.ttest_rel([treatment[s] for s in seeds], [baseline[s] for s in seeds]).pvalue)
    return Paired(n, mean, mean - half, mean + half, p_value)
