"""Which columns, categories and numeric ranges a synthetic table lost or invented.

The real example: scikit-learn's bundled breast-cancer table, whose synthetic side keeps only the benign
tumours: the target loses "malignant" (37% of the real rows) and every size column loses its top range
(malignant tumours are the large ones).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from auditor.pipeline.table_drift import MIN_CATEGORY_ROWS, RANGE_BINS, table_drift


def breast_cancer() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True)
    frame = data.frame.copy()
    frame["target"] = [str(data.target_names[t]) for t in frame["target"]]
    return frame


def test_dropping_the_malignant_class_is_named_with_its_shares() -> None:
    real = breast_cancer()
    synthetic = real[real["target"] == "benign"].reset_index(drop=True)
    drift = table_drift(real, synthetic)
    [target] = [c for c in drift["categories"] if c["column"] == "target"]
    assert (target["category"], target["status"]) == ("malignant", "lost")
    assert target["real_share"] == pytest.approx(212 / 569) and target["synthetic_share"] == 0.0
    assert f"{target['real_share']:.0%}" == "37%"
    radius = [r for r in drift["ranges"] if r["column"] == "mean radius"]
    assert radius, drift["ranges"]
    top = radius[0]
    # The top of the real distribution, open-ended (the real maximum is one tumour's value).
    assert top["high"] is None and top["low"] > float(synthetic["mean radius"].quantile(0.9))
    assert top["real_share"] >= 0.1 and top["synthetic_share"] < 0.1 * top["real_share"]
    assert drift["columns_lost"] == [] and drift["columns_invented"] == []
    assert drift["rows"] == {"real": 569, "synthetic": 357}


def test_matching_tables_have_no_findings() -> None:
    real = breast_cancer()
    shuffled = real.sample(frac=1.0, random_state=0).reset_index(drop=True)
    drift = table_drift(real, shuffled)
    assert drift["categories"] == [] and drift["ranges"] == [] and drift["outside"] == []


def test_invented_categories_rare_ones_unnamed_and_integer_codes_read_as_categories() -> None:
    rng = np.random.default_rng(0)
    real = pd.DataFrame(
        {
            "colour": ["red"] * 60 + ["blue"] * 36 + ["mauve"] * (MIN_CATEGORY_ROWS - 1),
            "code": [0] * 50 + [1] * 50,
            "x": rng.normal(size=100),
        }
    )
    synthetic = pd.DataFrame(
        {"colour": ["red"] * 90 + ["green"] * 10, "code": [0] * 100, "x": rng.normal(size=100)}
    )
    drift = table_drift(real, synthetic)
    found = {(c["column"], c["category"]): c["status"] for c in drift["categories"]}
    # mauve is lost too, but only 4 real rows hold it: a value that rare could single someone out.
    assert found == {("colour", "blue"): "lost", ("colour", "green"): "invented", ("code", "1"): "lost"}
    assert [c["category"] for c in drift["categories"]][-1] == "green"  # invented ones last


def test_ranges_merge_adjacent_deciles_and_never_print_the_real_extremes() -> None:
    real = pd.DataFrame({"x": np.linspace(0.0, 100.0, 1001)})
    synthetic = pd.DataFrame({"x": np.linspace(35.0, 100.0, 500)})  # nothing below 35
    drift = table_drift(real, synthetic)
    [low] = drift["ranges"]
    assert low["low"] is None and low["high"] == pytest.approx(30.0)
    assert low["real_share"] == pytest.approx(0.3, abs=0.002) and low["synthetic_share"] == 0.0
    assert drift["outside"] == []
    beyond = table_drift(real, pd.DataFrame({"x": np.linspace(-10.0, 90.0, 100)}))
    [outside] = beyond["outside"]
    assert outside["column"] == "x" and outside["below"] == pytest.approx(0.1) and outside["above"] == 0.0
    assert [r["low"] for r in beyond["ranges"]] == [pytest.approx(90.0)]
    assert RANGE_BINS == 10


def test_columns_lost_invented_and_constant_ones() -> None:
    real = pd.DataFrame({"a": [1.5, 2.5] * 10, "b": [3.0] * 20, "gone": list("xy") * 10})
    synthetic = pd.DataFrame({"a": [1.5, 2.5] * 10, "b": [3.0] * 20, "new": [0.25] * 20})
    drift = table_drift(real, synthetic)
    assert drift["columns_lost"] == ["gone"] and drift["columns_invented"] == ["new"]
    assert drift["ranges"] == [] and drift["categories"] == []
