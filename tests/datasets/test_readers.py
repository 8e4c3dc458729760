from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from auditor.datasets.fingerprint import file_fingerprint
from auditor.datasets.readers import read_embeddings, read_table
from auditor.datasets.refs import detect_format, resolve_local_path
from auditor.errors import DatasetFormatError, DatasetNotFoundError, TooFewSamplesError


@pytest.fixture
def array() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)


def test_reads_every_embedding_format_to_the_same_array(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    np.savez(tmp_path / "a.npz", feats=array)
    torch.save(torch.from_numpy(array), tmp_path / "a.pt")
    torch.save({"embeddings": torch.from_numpy(array)}, tmp_path / "d.pt")
    pq.write_table(
        pa.table({"emb": [row.tolist() for row in array], "id": list(range(20))}), tmp_path / "a.parquet"
    )
    for name, options in [("a.npy", {}), ("a.npz", {}), ("a.pt", {}), ("d.pt", {}), ("a.parquet", {})]:
        path = tmp_path / name
        got = read_embeddings(path, detect_format(path), options)
        np.testing.assert_allclose(got, array, rtol=1e-6, err_msg=name)


def test_npz_with_several_arrays_needs_a_key(tmp_path: Path, array: np.ndarray) -> None:
    np.savez(tmp_path / "two.npz", a=array, b=array * 2)
    with pytest.raises(DatasetFormatError, match="choose one"):
        read_embeddings(tmp_path / "two.npz", "npz", {})
    np.testing.assert_allclose(read_embeddings(tmp_path / "two.npz", "npz", {"key": "b"}), array * 2)
    with pytest.raises(DatasetFormatError, match="no array 'c'"):
        read_embeddings(tmp_path / "two.npz", "npz", {"key": "c"})


def test_nan_rows_are_rejected_with_their_indices(tmp_path: Path, array: np.ndarray) -> None:
    array[3, 1] = np.nan
    array[7, 0] = np.inf
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DatasetFormatError, match=r"2 row\(s\) contain NaN or inf \(first: \[3, 7\]\)"):
        read_embeddings(tmp_path / "bad.npy", "npy", {})


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        (np.zeros((0, 4), dtype=np.float32), TooFewSamplesError, "empty"),
        (np.zeros(5, dtype=np.float32), DatasetFormatError, "2-D"),
        (np.array([["a", "b"]]), DatasetFormatError, "numeric"),
    ],
)
def test_malformed_arrays(tmp_path: Path, payload: np.ndarray, error: type, match: str) -> None:
    np.save(tmp_path / "x.npy", payload)
    with pytest.raises(error, match=match):
        read_embeddings(tmp_path / "x.npy", "npy", {})


def test_corrupt_file_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DatasetFormatError, match="cannot read"):
        read_embeddings(tmp_path / "junk.npy", "npy", {})


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="not found"):
        resolve_local_path(str(tmp_path / "nope.npy"))
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(DatasetFormatError, match="cannot tell the format"):
        detect_format(tmp_path / "data.bin")
    with pytest.raises(DatasetFormatError, match="unsupported scheme"):
        resolve_local_path("ftp://example.org/x.npy")


def test_file_uri_resolves(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    assert resolve_local_path(f"file://{tmp_path / 'a.npy'}") == tmp_path / "a.npy"


def test_fingerprint_depends_on_bytes_only(tmp_path: Path, array: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", array)
    np.save(tmp_path / "b.npy", array)
    np.save(tmp_path / "c.npy", array + 1)
    assert file_fingerprint(tmp_path / "a.npy") == file_fingerprint(tmp_path / "b.npy")
    assert file_fingerprint(tmp_path / "a.npy") != file_fingerprint(tmp_path / "c.npy")
    assert file_fingerprint(tmp_path / "a.npy").startswith("sha256:")


def test_read_table_csv_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,y\n")
    frame = read_table(tmp_path / "t.csv", "csv")
    frame.to_parquet(tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet", "parquet").equals(frame)
    (tmp_path / "empty.csv").write_text("a,b\n")
    with pytest.raises(TooFewSamplesError):
        read_table(tmp_path / "empty.csv", "csv")
