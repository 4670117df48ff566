"""The shop simulator through a real ``aisle serve``: the service's report matches what the shoppers did."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.training.recsys_data import shared_data_dir

FIXTURE = shared_data_dir() / "fixture" / "recsys" / "amazon_scientific"


@pytest.mark.slow
def test_simulated_shop_report_matches_the_shoppers(tmp_path: Path) -> None:
    if not FIXTURE.is_dir():
        pytest.skip(f"fixture data not found at {FIXTURE} (set AISLE_SHARED_DATA)")
    from benchmarks.simulator import run

    result = run("fixture", 80, seed=3, workdir=tmp_path, threads=2)
    report, saw = result["report"], result["simulator_saw"]
    variants = {variant["name"]: variant for variant in report["variants"]}
    # Every shopper was enrolled, in the variant their responses named.
    assert {name: variant["visitors"] for name, variant in variants.items()} == saw["visits_by_variant"]
    assert sum(saw["visits_by_variant"].values()) == 80
    # One recommendations page and one search per visit.
    assert all(variant["impressions"] == 2 * variant["visitors"] for variant in variants.values())
    # Clicks named their responses; purchases were found by the window: nothing was lost.
    assert sum(variant["clicks"] for variant in variants.values()) == saw["clicks"] > 0
    assert sum(variant["purchases"] for variant in variants.values()) == saw["purchases"]
    assert sum(variant["revenue"] for variant in variants.values()) == pytest.approx(saw["revenue"], abs=0.05)
    assert report["sample_ratio"]["mismatch"] is False
    assert set(report["segments"]) == {"channel", "device", "region", "visitor"}
    analytics = result["search_analytics"]
    assert analytics["searches"] == 80
    # Position bias: the first position draws more clicks than the fifth.
    ctr = {entry["position"]: entry["ctr"]["value"] for entry in analytics["ctr_by_position"]}
    assert ctr[1] > ctr[5]
    assert any('variant="personal"' in line for line in result["metrics_lines"])
