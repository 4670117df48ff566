"""The statistics layer: known values, and the error rates it promises on simulated visitors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aisle.service.experiments.report import VisitorOutcomes, variant_lifts
from aisle.service.experiments.stats import (
    chi_square_sf,
    lift,
    mean_estimate,
    msprt_p_value,
    pooled_share_variance,
    ratio_estimate,
    sample_ratio_p_value,
    share_estimate,
    share_visitors_needed,
)


@pytest.mark.parametrize(
    ("statistic", "degrees", "expected"),
    [(3.841459, 1, 0.05), (5.991465, 2, 0.05), (11.0705, 5, 0.05), (6.634897, 1, 0.01), (0.5, 3, 0.918891)],
)
def test_chi_square_tail_matches_tables(statistic: float, degrees: int, expected: float) -> None:
    assert chi_square_sf(statistic, degrees) == pytest.approx(expected, abs=2e-5)


def test_wilson_interval_of_a_share() -> None:
    estimate = share_estimate(10, 100)
    assert estimate.value == 0.1
    assert (estimate.low, estimate.high) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert share_estimate(0, 50).low == 0.0 and share_estimate(0, 50).high > 0


def test_ratio_interval_uses_the_visitor_as_unit() -> None:
    # Two visitors with 100 impressions each are two observations, not 200.
    clicks = np.array([10.0, 30.0])
    impressions = np.array([100.0, 100.0])
    estimate = ratio_estimate(clicks, impressions)
    assert estimate.value == pytest.approx(0.2)
    naive = math.sqrt(0.2 * 0.8 / 200)
    assert math.sqrt(estimate.variance) > 3 * naive


def test_two_proportion_test_by_hand() -> None:
    treatment, control = share_estimate(120, 1000), share_estimate(100, 1000)
    result = lift(treatment, control, pooled_share_variance([120, 100], [1000, 1000]))
    pooled = 220 / 2000
    z = 0.02 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.lift == pytest.approx(0.2)
    assert result.low < 0.2 < result.high


def test_sample_ratio_mismatch() -> None:
    assert sample_ratio_p_value([5000, 5000], [0.5, 0.5]) == 1.0
    assert sample_ratio_p_value([5000, 5200], [0.5, 0.5]) < 0.05
    assert sample_ratio_p_value([2000, 8000], [0.2, 0.8]) == pytest.approx(1.0)


def test_planned_traffic_is_the_textbook_figure() -> None:
    # 5 % → 5.5 %, α = 0.05 two-sided, 80 % power: about 31,200 per arm (unpooled variances).
    needed = share_visitors_needed(0.05, 0.10)
    assert needed is not None and 31_000 <= needed <= 32_000
    assert share_visitors_needed(0.0, 0.1) is None


def test_sequential_p_value_is_more_conservative_than_the_fixed_one() -> None:
    treatment, control = share_estimate(560, 10_000), share_estimate(500, 10_000)
    fixed = lift(treatment, control)
    sequential = msprt_p_value(fixed.difference, fixed.difference_variance, (0.1 * 0.05) ** 2)
    assert fixed.p_value < sequential <= 1.0
    huge = lift(share_estimate(900, 10_000), control)
    assert msprt_p_value(huge.difference, huge.difference_variance, (0.1 * 0.05) ** 2) < 1e-6


def _visitors(rng: np.random.Generator, n: int, conversion: float) -> VisitorOutcomes:
    impressions = 1 + rng.poisson(1.0, n)
    bought = rng.random(n) < conversion
    return VisitorOutcomes(
        impressions.astype(float),
        rng.poisson(0.3 * impressions).astype(float),
        (rng.random(n) < 0.12).astype(float),
        bought.astype(float),
        np.where(bought, rng.lognormal(3.5, 0.8, n), 0.0),
    )


def test_aa_false_positive_rate_stays_near_five_percent() -> None:
    rng = np.random.default_rng(3)
    runs = 300
    hits = dict.fromkeys(("ctr", "add_to_cart_rate", "conversion", "revenue_per_visitor"), 0)
    for _ in range(runs):
        lifts = variant_lifts(_visitors(rng, 2000, 0.05), _visitors(rng, 2000, 0.05))
        for metric in hits:
            hits[metric] += lifts[metric].p_value < 0.05
    for metric, count in hits.items():
        assert 0.02 <= count / runs <= 0.08, f"{metric}: {count}/{runs} false positives"


def test_a_true_lift_is_covered_by_its_interval() -> None:
    rng = np.random.default_rng(5)
    runs, covered = 200, 0
    for _ in range(runs):
        result = variant_lifts(_visitors(rng, 4000, 0.22), _visitors(rng, 4000, 0.20))["conversion"]
        covered += result.low <= 0.10 <= result.high
    assert covered / runs >= 0.9


def test_mean_estimate_degenerate_inputs() -> None:
    assert math.isnan(mean_estimate(np.array([])).value)
    assert mean_estimate(np.array([2.0])).variance == math.inf
