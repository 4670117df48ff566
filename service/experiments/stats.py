"""The statistics of an experiment report: rates with intervals, lift with p-values, SRM, power.

Every metric is a per-visitor quantity, because visitors (not requests) are what is randomised:
two requests of one visitor are not independent, so a rate over requests analysed as if they
were would report intervals that are too narrow.

* A mean over visitors (conversion = share of visitors with a purchase, revenue per visitor):
  Wilson's interval for a share, the normal interval for a mean.
* A ratio of sums over visitors (CTR = clicks / impressions): the delta method, which treats the
  visitor as the unit (the numerator and denominator of one visitor are correlated).
* Lift = treatment / control − 1, its interval by the delta method on the ratio of the two
  estimates; the p-value is Welch's test on the difference (normal approximation: reports only
  claim significance with hundreds of visitors per arm).
* Peeking: that p-value is valid only when the report is read once, at the planned traffic.
  ``msprt_p_value`` is the always-valid alternative (a mixture sequential probability ratio
  test, Johari et al. 2017): its running minimum over every look may be read at any time.
* Sample-ratio mismatch: Pearson's chi-square of visitors per variant against the configured
  shares; a tiny p-value means the assignment or the logging is broken and no lift can be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()
#: Two-sided 95 %.
Z95 = _NORMAL.inv_cdf(0.975)


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % interval and the variance of the estimate."""

    value: float
    low: float
    high: float
    variance: float

    def as_dict(self, digits: int = 6) -> dict[str, float | None | list[float | None]]:
        return {"value": _round(self.value, digits), "ci95": [_round(self.low, digits), _round(self.high, digits)]}


@dataclass(frozen=True)
class Lift:
    """Relative lift of a treatment over control with its 95 % interval and two p-values."""

    lift: float
    low: float
    high: float
    p_value: float
    difference: float
    difference_variance: float

    def as_dict(self, digits: int = 6) -> dict[str, float | list | None]:
        return {
            "lift": _round(self.lift, digits),
            "ci95": [_round(self.low, digits), _round(self.high, digits)],
            "p_value": _round(self.p_value, digits),
        }


def _round(value: float, digits: int) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def mean_estimate(values: np.ndarray) -> Estimate:
    """The mean over visitors with its normal 95 % interval (variance of the mean: s²/n)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    variance = float(values.var(ddof=1)) / n if n > 1 else math.inf
    half = Z95 * math.sqrt(variance)
    return Estimate(mean, mean - half, mean + half, variance)


def share_estimate(successes: int, n: int) -> Estimate:
    """A share of visitors with Wilson's 95 % interval (sound near 0 and with few visitors)."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), p * (1 - p) / n)


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> Estimate:
    """Σ numerator / Σ denominator over visitors, its variance by the delta method."""
    y = np.asarray(numerator, dtype=np.float64)
    x = np.asarray(denominator, dtype=np.float64)
    n = len(x)
    if n == 0 or x.sum() == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    ratio = float(y.sum() / x.sum())
    if n < 2:
        return Estimate(ratio, math.nan, math.nan, math.inf)
    mean_x = float(x.mean())
    residual = y - ratio * x
    variance = float(residual.var(ddof=1)) / (n * mean_x * mean_x)
    half = Z95 * math.sqrt(variance)
    return Estimate(ratio, ratio - half, ratio + half, variance)


def lift(treatment: Estimate, control: Estimate, null_variance: float | None = None) -> Lift:
    """Relative lift ``t / c − 1``: delta-method interval, Welch (normal) p-value on ``t − c``.

    ``null_variance``: the variance of ``t − c`` under no effect, when it is known better than
    the sum of the two (the pooled variance of two shares: ``pooled_share_variance``).
    """
    t, c = treatment.value, control.value
    difference = t - c
    variance = treatment.variance + control.variance
    if not (math.isfinite(variance) and math.isfinite(t) and math.isfinite(c)):
        return Lift(math.nan, math.nan, math.nan, math.nan, difference, variance)
    test_variance = variance if null_variance is None else null_variance
    if test_variance == 0:
        p_value = 1.0 if difference == 0 else 0.0
    else:
        p_value = two_sided_p(difference / math.sqrt(test_variance))
    if c == 0:
        return Lift(math.nan, math.nan, math.nan, p_value, difference, variance)
    relative = t / c - 1
    lift_variance = treatment.variance / (c * c) + (t * t) * control.variance / c**4
    half = Z95 * math.sqrt(lift_variance)
    return Lift(relative, relative - half, relative + half, p_value, difference, variance)


def pooled_share_variance(successes: Sequence[int], visitors: Sequence[int]) -> float:
    """Variance of the difference of two shares if both had the pooled share (two-proportion z-test)."""
    total = sum(visitors)
    if total == 0 or min(visitors) == 0:
        return math.nan
    pooled = sum(successes) / total
    return pooled * (1 - pooled) * sum(1 / n for n in visitors)


def two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def msprt_p_value(difference: float, variance: float, mixing_variance: float) -> float:
    """One look's always-valid p-value ``min(1, 1/Λ)`` of a normal-mixture SPRT on ``t − c``.

    ``Λ = sqrt(V / (V + τ²)) · exp(τ² d² / (2 V (V + τ²)))`` with ``V`` the variance of the
    difference ``d`` and ``τ²`` the mixing variance (the squared effect worth detecting). The
    running minimum over all looks is the p-value that stays valid however often it is read.
    """
    if not (variance > 0 and mixing_variance > 0 and math.isfinite(variance) and math.isfinite(difference)):
        return 1.0
    total = variance + mixing_variance
    log_lambda = 0.5 * math.log(variance / total) + mixing_variance * difference * difference / (2 * variance * total)
    return float(min(1.0, math.exp(-log_lambda)))


def sample_ratio_p_value(observed: Sequence[int], shares: Sequence[float]) -> float:
    """Pearson's chi-square p-value of visitor counts against the configured shares."""
    total = sum(observed)
    weight = sum(shares)
    if total == 0 or len(observed) < 2:
        return 1.0
    statistic = 0.0
    for count, share in zip(observed, shares):
        expected = total * share / weight
        statistic += (count - expected) ** 2 / expected if expected > 0 else 0.0
    return chi_square_sf(statistic, len(observed) - 1)


def chi_square_sf(statistic: float, degrees: int) -> float:
    """P(χ²_degrees ≥ statistic): the regularized upper incomplete gamma Q(k/2, x/2)."""
    if statistic <= 0:
        return 1.0
    return _gamma_q(degrees / 2.0, statistic / 2.0)


def _gamma_q(a: float, x: float) -> float:
    # Series for x < a + 1, Lentz's continued fraction beyond (Numerical Recipes, 6.2).
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        denominator = a
        for _ in range(500):
            denominator += 1
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)


def visitors_needed(
    control_mean: float,
    control_variance: float,
    relative_effect: float,
    treatment_variance: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int | None:
    """Visitors per variant for a two-sided test at ``alpha`` to detect ``relative_effect`` with ``power``.

    ``n = (z_{1−α/2} + z_power)² (σ²_c + σ²_t) / (effect · mean_c)²``, rounded up to two
    significant digits (a plan, not a measurement). ``control_variance`` is the per-visitor
    variance (for a share p: p(1 − p)); the treatment's defaults to the control's.
    """
    effect = relative_effect * control_mean
    if not (effect != 0 and math.isfinite(effect) and control_variance > 0):
        return None
    treatment_variance = control_variance if treatment_variance is None else treatment_variance
    z = _NORMAL.inv_cdf(1 - alpha / 2) + _NORMAL.inv_cdf(power)
    n = math.ceil(z * z * (control_variance + treatment_variance) / (effect * effect))
    return _round_up_2_significant(n)


def share_visitors_needed(control_share: float, relative_effect: float, **kwargs: float) -> int | None:
    """``visitors_needed`` for a share (conversion, add-to-cart rate)."""
    if not 0 < control_share < 1:
        return None
    treated = min(control_share * (1 + relative_effect), 1.0)
    return visitors_needed(
        control_share,
        control_share * (1 - control_share),
        relative_effect,
        treated * (1 - treated),
        **kwargs,
    )


def _round_up_2_significant(n: int) -> int:
    if n < 100:
        return n
    step = 10 ** (len(str(n)) - 2)
    return -(-n // step) * step
