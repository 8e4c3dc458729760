"""The galleries pick the samples that show what the metrics found, and never more than their bounds.

One scenario with every finding planted: three well-separated real clusters (labelled A, B, C), a
synthetic set that fills A and B only, copies five real samples exactly, repeats one sample four times
and adds three far outliers. The galleries must name exactly those samples, in the documented order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from auditor import samples
from auditor.pipeline.evaluate import MetricParams, evaluate
from auditor.pipeline.galleries import GalleryLimits, build_galleries, gallery_refs

CENTRES = (0.0, 12.0, 24.0)
PER_CLUSTER = 100
COPIED = [3, 17, 42, 58, 77]  # real rows of cluster A copied into the synthetic set
OUTLIERS = (60.0, 70.0, 80.0)
EVERYTHING = MetricParams(nearest_k=5, bootstrap=0, spectral_bootstrap=0, kid_subset_size=50, num_modes=3)


def planted() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)

    def cluster(centre: float, n: int) -> torch.Tensor:
        return torch.randn(n, 4, generator=gen, dtype=torch.float64) + centre

    real = torch.cat([cluster(c, PER_CLUSTER) for c in CENTRES])
    synthetic = torch.cat(
        [
            cluster(CENTRES[0], 90),  # rows 0-89: cluster A
            cluster(CENTRES[1], 90),  # rows 90-179: cluster B (no cluster C at all)
            real[COPIED],  # rows 180-184: exact copies
            cluster(CENTRES[1], 1).repeat(4, 1),  # rows 185-188: one sample four times
            torch.tensor([[v, v, v, v] for v in OUTLIERS], dtype=torch.float64),  # rows 189-191
        ]
    )
    holdout = torch.cat([cluster(c, 50) for c in CENTRES])
    return real.float(), synthetic.float(), holdout.float()


def tables_of(
    real: torch.Tensor, synthetic: torch.Tensor, holdout: torch.Tensor | None, params: MetricParams
):  # type: ignore[no-untyped-def]
    evaluation = evaluate(real, synthetic, holdout, params)
    keys = {
        side: [f"{side}-{i}" for i in range(len(columns["index"]))]
        for side, columns in evaluation.samples.items()
    }
    return evaluation, samples.build_tables(evaluation.samples, keys)


@pytest.fixture(scope="module")
def scenario() -> tuple[Any, dict[str, Any], dict[str, Any]]:
    real, synthetic, holdout = planted()
    evaluation, tables = tables_of(real, synthetic, holdout, EVERYTHING)
    labels = [name for name in "ABC" for _ in range(PER_CLUSTER)]
    galleries = build_galleries(
        tables,
        tau=evaluation.details["copy_threshold_tau"],
        mode_real_share=evaluation.report.mode_real_share,
        mode_synthetic_share=evaluation.report.mode_synthetic_share,
        real_labels=labels,
    )
    return evaluation, tables, galleries


def test_closest_copies_pair_each_copy_with_the_real_sample_it_copies(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, _, galleries = scenario
    copies = galleries["copies"][: len(COPIED)]
    pairs = sorted((c["synthetic"]["index"], c["real"]["index"]) for c in copies)
    assert pairs == [(180 + i, row) for i, row in enumerate(COPIED)]
    assert all(c["distance"] == 0.0 and c["memorized"] for c in copies)
    assert copies[0]["synthetic"]["key"] == f"synthetic-{copies[0]['synthetic']['index']}"
    assert copies[0]["real"]["key"] == f"real-{copies[0]['real']['index']}"
    # Nearest first; no fresh real sample is as near as an exact copy.
    distances = [c["distance"] for c in galleries["copies"]]
    assert distances == sorted(distances) and len(distances) == GalleryLimits().copies
    assert all(c["holdout_closer"] == 0.0 for c in copies)
    holdout = evaluation.samples["holdout"]["nearest_real_distance"]
    assert galleries["holdout_nearest"] == {
        "median": pytest.approx(float(np.median(holdout)), rel=1e-12),
        "p05": pytest.approx(float(np.percentile(holdout, 5)), rel=1e-12),
        "n": 150,
    }
    assert galleries["tau"] == evaluation.details["copy_threshold_tau"]
    assert galleries["memorized"] == int(evaluation.samples["synthetic"]["memorized"].sum())


def test_outside_the_manifold_lists_the_outliers_farthest_first(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, _, galleries = scenario
    outside = galleries["outside"]
    assert [item["synthetic"]["index"] for item in outside[:3]] == [191, 190, 189]
    assert galleries["outside_total"] == int((~evaluation.samples["synthetic"]["in_real_support"]).sum())
    assert all(
        not evaluation.samples["synthetic"]["in_real_support"][i["synthetic"]["index"]] for i in outside
    )
    distances = [item["distance"] for item in outside]
    assert distances == sorted(distances, reverse=True)


def test_missing_groups_the_lost_mode_first_shown_by_its_typical_samples(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, _, galleries = scenario
    real = evaluation.samples["real"]
    missing = galleries["missing"]
    assert missing["uncovered"] == int((~real["covered"]).sum())
    first = missing["groups"][0]
    lost_mode = int(real["mode"][250])  # a cluster C sample's mode
    # Only the three far outliers fall in cluster C's mode (its centroid is the nearest to them).
    assert first["mode"] == lost_mode and first["synthetic_share"] == pytest.approx(3 / 192)
    assert first["size"] == PER_CLUSTER and first["uncovered"] == PER_CLUSTER
    medoids = [ref["index"] for ref in first["medoids"]]
    # Typical: the mode's real samples nearest its centroid, brute force.
    real_x = planted()[0].double().numpy()
    members = np.flatnonzero(real["mode"] == lost_mode)
    centroid_distance = np.linalg.norm(real_x[members] - real_x[members].mean(0), axis=1)
    assert medoids == members[np.argsort(centroid_distance, kind="stable")][:3].tolist()
    assert len(first["samples"]) == GalleryLimits().missing_per_mode
    assert all(200 <= ref["index"] < 300 and not real["covered"][ref["index"]] for ref in first["samples"])
    gaps = [real["nearest_synthetic_distance"][ref["index"]] for ref in first["samples"]]
    assert gaps == sorted(gaps, reverse=True)  # the most missed first
    lost = [g["real_share"] - g["synthetic_share"] for g in missing["groups"]]
    assert lost == sorted(lost, reverse=True)


def test_duplicates_are_grouped_through_their_twins(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, _, galleries = scenario
    duplicates = galleries["duplicates"]
    assert duplicates["total"] == int(evaluation.samples["synthetic"]["duplicate"].sum())
    biggest = duplicates["groups"][0]
    assert biggest["size"] == 4 and biggest["distance"] == 0.0
    assert [ref["index"] for ref in biggest["members"]] == [185, 186, 187, 188]
    sizes = [group["size"] for group in duplicates["groups"]]
    assert sizes == sorted(sizes, reverse=True)


def test_each_mode_is_named_by_its_medoid_and_majority_label(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, _, galleries = scenario
    modes = galleries["modes"]
    assert [entry["mode"] for entry in modes] == [0, 1, 2]
    real_modes = evaluation.samples["real"]["mode"]
    for entry in modes:
        cluster = "ABC"[entry["medoid"]["index"] // PER_CLUSTER]
        assert real_modes[entry["medoid"]["index"]] == entry["mode"]
        assert (entry["label"], entry["label_share"]) == (cluster, 1.0)


def test_every_gallery_keeps_to_its_bound_and_refs_come_most_telling_first(scenario) -> None:  # type: ignore[no-untyped-def]
    evaluation, tables, galleries = scenario
    small = GalleryLimits(
        copies=2,
        outside=1,
        missing_modes=1,
        medoids=1,
        missing_per_mode=2,
        duplicate_groups=1,
        duplicate_members=2,
        mode_medoids=1,
    )
    bounded = build_galleries(
        tables,
        tau=evaluation.details["copy_threshold_tau"],
        mode_real_share=evaluation.report.mode_real_share,
        mode_synthetic_share=evaluation.report.mode_synthetic_share,
        limits=small,
    )
    assert len(bounded["copies"]) == 2 and len(bounded["outside"]) == 1
    assert len(bounded["missing"]["groups"]) == 1
    assert (
        len(bounded["missing"]["groups"][0]["medoids"]) == 1
        and len(bounded["missing"]["groups"][0]["samples"]) == 2
    )
    assert (
        len(bounded["duplicates"]["groups"]) == 1 and len(bounded["duplicates"]["groups"][0]["members"]) == 2
    )
    assert bounded["duplicates"]["groups"][0]["size"] == 4  # the group's size is not cut, only what is shown
    assert sum(entry["medoid"] is not None for entry in bounded["modes"]) == 1
    refs = list(gallery_refs(bounded))
    first = bounded["copies"][0]
    assert refs[:2] == [("synthetic", first["synthetic"]["index"]), ("real", first["real"]["index"])]
    assert len(refs) <= 2 * 2 + 1 + (1 + 2) + 2 + 1
    assert len(list(gallery_refs(galleries))) <= 2 * 12 + 12 + 6 * (3 + 6) + 8 * 6 + 64


def test_without_knn_metrics_only_the_modes_speak() -> None:
    real, synthetic, _ = planted()
    evaluation, tables = tables_of(
        real, synthetic, None, MetricParams(metrics=("mode_coverage",), bootstrap=0, num_modes=3)
    )
    galleries = build_galleries(
        tables,
        mode_real_share=evaluation.report.mode_real_share,
        mode_synthetic_share=evaluation.report.mode_synthetic_share,
    )
    assert galleries["copies"] == [] and galleries["outside"] == [] and galleries["outside_total"] is None
    assert galleries["duplicates"] == {"total": None, "groups": []}
    assert galleries["holdout_nearest"] is None
    group = galleries["missing"]["groups"][0]
    assert group["mode"] == int(evaluation.samples["real"]["mode"][250])
    assert group["uncovered"] is None and group["samples"] == [] and len(group["medoids"]) == 3
    assert galleries["missing"]["uncovered"] is None


def test_without_mode_metrics_the_uncovered_samples_form_one_group() -> None:
    real, synthetic, _ = planted()
    evaluation, tables = tables_of(real, synthetic, None, MetricParams(metrics=("coverage",), bootstrap=0))
    galleries = build_galleries(tables)
    [group] = galleries["missing"]["groups"]
    assert group["mode"] is None and group["medoids"] == []
    assert group["uncovered"] == int((~evaluation.samples["real"]["covered"]).sum())
    assert len(group["samples"]) == GalleryLimits().missing_without_modes
    assert galleries["modes"] == []
