"""Finding, verifying and loading weights files that the tests write themselves (there is no network)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from auditor.errors import BadInputError
from auditor.extractors.weights import (
    WeightsChecksumError,
    WeightsFormatError,
    WeightsNotFoundError,
    WeightsSpec,
    file_sha256,
    hub_checkpoint_dir,
    load_state_dict,
    resolve_weights,
    sidecar_path,
    without_keys,
)

FILENAME = "tiny-net-0123abcd.pth"
SOURCE_URL = "https://example.org/weights/tiny-net-0123abcd.pth"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch.hub cache of this test's own (TORCH_HOME is torch's documented setting)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert hub_checkpoint_dir() == home / "hub" / "checkpoints", "torch.hub.set_dir was called elsewhere"
    return home


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "weights"
    directory.mkdir()
    return directory


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "layer.weight": torch.randn(4, 3, generator=generator),
        "layer.bias": torch.randn(4, generator=generator),
    }


def write_weights(directory: Path, seed: int = 0, filename: str = FILENAME) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    torch.save(tiny_state_dict(seed), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def spec_for(sha256: str) -> WeightsSpec:
    return WeightsSpec(name="tiny net", filename=FILENAME, sha256=sha256, source_url=SOURCE_URL)


def test_finds_and_verifies_the_file_in_the_weights_dir(torch_home: Path, weights_dir: Path) -> None:
    path, digest = write_weights(weights_dir)
    assert resolve_weights(spec_for(digest), weights_dir) == path


def test_a_hash_prefix_pins_the_file_as_torch_hub_does(torch_home: Path, weights_dir: Path) -> None:
    path, digest = write_weights(weights_dir)
    assert resolve_weights(spec_for(digest[:8]), weights_dir) == path
    wrong_prefix = format((int(digest[:8], 16) + 1) % 16**8, "08x")
    with pytest.raises(WeightsChecksumError):
        resolve_weights(spec_for(wrong_prefix), weights_dir)


def test_falls_back_to_the_torch_hub_checkpoint_cache(torch_home: Path, weights_dir: Path) -> None:
    path, digest = write_weights(torch_home / "hub" / "checkpoints")
    assert resolve_weights(spec_for(digest), weights_dir) == path
    assert resolve_weights(spec_for(digest), None) == path


def test_the_weights_dir_comes_before_the_hub_cache(torch_home: Path, weights_dir: Path) -> None:
    write_weights(torch_home / "hub" / "checkpoints")
    path, digest = write_weights(weights_dir)
    assert resolve_weights(spec_for(digest), weights_dir) == path


def test_a_wrong_file_in_the_weights_dir_is_an_error_not_skipped(torch_home: Path, weights_dir: Path) -> None:
    _, good_digest = write_weights(torch_home / "hub" / "checkpoints", seed=0)
    write_weights(weights_dir, seed=1)
    with pytest.raises(WeightsChecksumError):
        resolve_weights(spec_for(good_digest), weights_dir)


def test_missing_file_says_which_file_goes_where_and_where_to_get_it(
    torch_home: Path, weights_dir: Path
) -> None:
    spec = spec_for("0" * 64)
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_weights(spec, weights_dir)
    error = caught.value
    for fragment in (FILENAME, str(weights_dir), str(torch_home / "hub" / "checkpoints"), SOURCE_URL):
        assert fragment in error.message, f"{fragment!r} missing from: {error.message}"
    assert isinstance(error, BadInputError)
    assert (error.code, error.exit_code, error.http_status) == ("weights_not_found", 2, 422)
    assert error.details["searched"] == [str(weights_dir), str(torch_home / "hub" / "checkpoints")]


def test_missing_file_without_a_weights_dir_names_the_hub_cache(torch_home: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        resolve_weights(spec_for("0" * 64), None)
    assert caught.value.details["searched"] == [str(torch_home / "hub" / "checkpoints")]


def test_checksum_mismatch_reports_both_hashes(torch_home: Path, weights_dir: Path) -> None:
    path, actual = write_weights(weights_dir)
    expected = "f" * 64
    with pytest.raises(WeightsChecksumError) as caught:
        resolve_weights(spec_for(expected), weights_dir)
    error = caught.value
    assert actual in error.message and expected in error.message and str(path) in error.message
    assert error.details == {"path": str(path), "actual_sha256": actual, "expected_sha256": expected}
    assert (error.code, error.exit_code) == ("weights_checksum", 2)


def test_digest_is_remembered_in_a_sidecar_keyed_by_size_and_mtime(weights_dir: Path) -> None:
    path, digest = write_weights(weights_dir)
    assert file_sha256(path) == digest
    stat = path.stat()
    assert json.loads(sidecar_path(path).read_text()) == {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": digest,
    }


def test_sidecar_is_trusted_while_size_and_mtime_hold(weights_dir: Path) -> None:
    # The cache's documented limit, shown so that it is a decision and not an accident: same size, same
    # mtime, different bytes -> the remembered digest is returned without re-reading the file.
    path, digest = write_weights(weights_dir)
    file_sha256(path)
    stat = path.stat()
    path.write_bytes(bytes(b ^ 0xFF for b in path.read_bytes()))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(path) == digest


def test_a_changed_file_is_hashed_again_despite_its_sidecar(torch_home: Path, weights_dir: Path) -> None:
    path, digest = write_weights(weights_dir, seed=0)
    resolve_weights(spec_for(digest), weights_dir)
    with path.open("ab") as handle:
        handle.write(b"appended by a broken download")
    with pytest.raises(WeightsChecksumError):
        resolve_weights(spec_for(digest), weights_dir)


def test_an_unreadable_sidecar_is_ignored(weights_dir: Path) -> None:
    path, digest = write_weights(weights_dir)
    sidecar_path(path).write_text("{not json")
    assert file_sha256(path) == digest


def test_spec_refuses_a_hash_that_is_not_hex_or_too_short() -> None:
    with pytest.raises(ValueError, match="8 to 64 lowercase hex"):
        spec_for("6726825")
    with pytest.raises(ValueError, match="8 to 64 lowercase hex"):
        spec_for("6726825D")


def test_loads_a_pth_state_dict_on_cpu(weights_dir: Path) -> None:
    path, _ = write_weights(weights_dir, seed=3)
    loaded = load_state_dict(path)
    expected = tiny_state_dict(seed=3)
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0)
        assert loaded[key].device.type == "cpu"


def test_loads_a_safetensors_state_dict(weights_dir: Path) -> None:
    from safetensors.torch import save_file

    path = weights_dir / "tiny.safetensors"
    save_file(tiny_state_dict(seed=4), str(path))
    loaded = load_state_dict(path)
    torch.testing.assert_close(
        loaded["layer.weight"], tiny_state_dict(seed=4)["layer.weight"], rtol=0, atol=0
    )


def test_a_pickle_that_is_not_plain_tensors_is_refused(weights_dir: Path) -> None:
    path = weights_dir / "model.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module: weights_only refuses the pickle
    with pytest.raises(WeightsFormatError, match="cannot read weights file"):
        load_state_dict(path)


def test_a_file_that_is_not_a_state_dict_is_refused(weights_dir: Path) -> None:
    path = weights_dir / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsFormatError, match="does not hold a state dict"):
        load_state_dict(path)


def test_garbage_is_refused(weights_dir: Path) -> None:
    path = weights_dir / "garbage.pth"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsFormatError) as caught:
        load_state_dict(path)
    assert caught.value.code == "weights_format"


def test_without_keys_keeps_torch_version_metadata(weights_dir: Path) -> None:
    path = weights_dir / "bn.pth"
    torch.save(torch.nn.BatchNorm1d(3).state_dict(), path)
    loaded = load_state_dict(path)
    trimmed = without_keys(loaded, frozenset({"weight"}))
    assert "weight" not in trimmed and "bias" in trimmed
    assert getattr(trimmed, "_metadata", None) == getattr(loaded, "_metadata", None) is not None
