from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine

from auditor.errors import DatasetFormatError, SchemaMismatchError, UnknownNameError
from auditor.extractors import get_extractor
from auditor.extractors.base import LoadedDataset
from auditor.pipeline.progress import NullProgress


def _loaded(path: Path, side: str) -> LoadedDataset:
    return LoadedDataset(
        side=side, reference=str(path), path=path, format=path.suffix[1:], fingerprint="x", options={}
    )


@pytest.fixture
def wine(tmp_path: Path) -> tuple[Path, Path]:
    frame = load_wine(as_frame=True).frame
    frame["quality"] = np.where(frame["target"] == 0, "high", np.where(frame["target"] == 1, "mid", "low"))
    frame = frame.drop(columns=["target"]).sample(frac=1.0, random_state=0)
    real, synth = frame.iloc[:100], frame.iloc[100:]
    real.to_csv(tmp_path / "real.csv", index=False)
    synth.to_parquet(tmp_path / "synth.parquet")
    return tmp_path / "real.csv", tmp_path / "synth.parquet"


def test_standardises_on_real_statistics_and_one_hots_categories(wine: tuple[Path, Path]) -> None:
    extractor = get_extractor("tabular")
    real, synth = _loaded(wine[0], "real"), _loaded(wine[1], "synthetic")
    extractor.fit(real)
    x_real = extractor.embed(real, NullProgress()).numpy()
    x_synth = extractor.embed(synth, NullProgress())
    numeric = 13
    np.testing.assert_allclose(x_real[:, :numeric].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_real[:, :numeric].std(0), 1, atol=1e-4)
    assert x_real.shape[1] == numeric + 3 and x_synth.shape[1] == numeric + 3
    np.testing.assert_array_equal(x_real[:, numeric:].sum(1), 1)
    described = extractor.describe()
    assert described["dim"] == 16 and described["preprocessing"]["categorical_columns"] == {"quality": 3}


def test_unseen_category_maps_to_zeros_and_is_counted(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "zzz"]}).to_csv(tmp_path / "s.csv", index=False)
    extractor = get_extractor("tabular")
    extractor.fit(_loaded(tmp_path / "r.csv", "real"))
    x = extractor.embed(_loaded(tmp_path / "s.csv", "synthetic"), NullProgress()).numpy()
    np.testing.assert_array_equal(x[1, 1:], [0, 0])
    assert extractor.unseen_categories["synthetic"] == {"c": 1}  # type: ignore[attr-defined]


def test_schema_mismatch_names_the_columns(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, 2.0], "y": [1, 2]}).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"x": ["a", "b"], "z": [1, 2]}).to_csv(tmp_path / "s.csv", index=False)
    extractor = get_extractor("tabular")
    extractor.fit(_loaded(tmp_path / "r.csv", "real"))
    with pytest.raises(SchemaMismatchError) as info:
        extractor.embed(_loaded(tmp_path / "s.csv", "synthetic"), NullProgress())
    assert info.value.details == {
        "side": "synthetic",
        "missing": ["y"],
        "extra": ["z"],
        "kind_mismatch": ["x"],
    }


def test_missing_numeric_values_are_a_clear_error(tmp_path: Path) -> None:
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame({"x": [1.0, None, 3.0]}).to_csv(tmp_path / "s.csv", index=False)
    extractor = get_extractor("tabular")
    extractor.fit(_loaded(tmp_path / "r.csv", "real"))
    with pytest.raises(DatasetFormatError, match=r"1 row\(s\) with missing"):
        extractor.embed(_loaded(tmp_path / "s.csv", "synthetic"), NullProgress())


def test_wrong_modality_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((3, 2), dtype=np.float32))
    pd.DataFrame({"x": [1.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DatasetFormatError, match="not a table"):
        get_extractor("tabular").fit(_loaded(tmp_path / "e.npy", "real"))
    with pytest.raises(DatasetFormatError, match="not embeddings"):
        get_extractor("precomputed").embed(_loaded(tmp_path / "t.csv", "real"), NullProgress())


def test_unknown_extractor() -> None:
    with pytest.raises(UnknownNameError, match="available"):
        get_extractor("inception-v9")
