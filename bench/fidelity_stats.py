"""The statistics of bench/fidelity.py: the difference of two means with its Welch t interval.

``welch_difference`` gives mean(a) - mean(b) and its confidence interval from Welch's t (unequal
variances, Welch-Satterthwaite degrees of freedom). The t quantile comes from scipy where it is
installed, else from Student's t distribution integrated numerically here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def _t_cdf(x: float, df: float) -> float:
    """Student's t distribution function, by Simpson's rule on the density (for x >= 0)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(u: float) -> float:
        return math.exp(log_norm - (df + 1) / 2 * math.log1p(u * u / df))

    n = 2000
    h = x / n
    total = density(0) + density(x) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, n))
    return 0.5 + total * h / 3


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile (p > 0.5) of Student's t with ``df`` degrees of freedom."""
    try:
        from scipy.stats import t
    except ImportError:
        low, high = 0.0, 1.0
        while _t_cdf(high, df) < p:
            high *= 2
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
        return (low + high) / 2
    return float(t.ppf(p, df))


@dataclass(frozen=True)
class Difference:
    """A difference of means and its confidence interval: low, high and the degrees of freedom."""

    estimate: float
    low: float | None
    high: float | None
    df: float | None


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """mean(a) - mean(b) with its Welch confidence interval (None where it cannot be estimated)."""
    estimate = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Difference(estimate, None, None, None)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return Difference(estimate, estimate, estimate, math.inf)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(va + vb)
    return Difference(estimate, estimate - half, estimate + half, df)
