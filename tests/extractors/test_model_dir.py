"""``text-minilm``'s ``model_dir`` is confined like a dataset path: with data roots set (the service), it
must lie under the weights directory or a data root, and a refusal does not tell whether the directory
exists. Without data roots (the local CLI) any directory may be named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from auditor.config import Settings
from auditor.datasets.refs import resolve_dataset
from auditor.datasets.uri import PathNotAllowedError
from auditor.extractors import get_extractor
from auditor.extractors.text import MiniLMTextExtractor, model_dir_roots
from auditor.extractors.text_encoder import TextModelError, default_model_dir


@pytest.fixture
def confined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Data roots and a weights directory as a deployment sets them, plus a directory outside both."""
    dirs = {name: tmp_path / name for name in ("data", "weights", "outside")}
    for path in dirs.values():
        path.mkdir()
    monkeypatch.setenv("AUDITOR_DATA_ROOTS", str(dirs["data"]))
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(dirs["weights"]))
    return dirs


def _refusal(model_dir: str) -> PathNotAllowedError:
    with pytest.raises(PathNotAllowedError) as caught:
        get_extractor("text-minilm", {"model_dir": model_dir})  # what the API does at submit
    return caught.value


def test_a_model_dir_outside_the_roots_is_refused_like_a_dataset_path(confined: dict[str, Path]) -> None:
    real_model = shutil.copytree(default_model_dir(), confined["outside"] / "minilm")
    refusal = _refusal(str(real_model))
    with pytest.raises(PathNotAllowedError) as caught:
        resolve_dataset(str(real_model / "config.json"), data_roots=[confined["data"]])
    assert (refusal.code, refusal.http_status, refusal.exit_code) == (caught.value.code, 403, 2)
    assert refusal.code == "path_not_allowed"
    assert "model directories (AUDITOR_WEIGHTS_DIR and AUDITOR_DATA_ROOTS)" in refusal.message


def test_the_refusal_does_not_reveal_whether_the_directory_exists(confined: dict[str, Path]) -> None:
    existing = shutil.copytree(default_model_dir(), confined["outside"] / "minilm")
    missing = confined["outside"] / "nothing-here"
    for probe in ("/etc", "/nonexistent-dir-for-this-test"):
        assert _refusal(probe).message.replace(probe, "<dir>") == _refusal(str(missing)).message.replace(
            str(missing), "<dir>"
        )
    seen = _refusal(str(existing))
    unseen = _refusal(str(missing))
    assert seen.message.replace(str(existing), "<dir>") == unseen.message.replace(str(missing), "<dir>")
    assert seen.details == {**unseen.details, "path": str(existing)}


def test_dotdot_and_links_out_of_the_roots_are_refused(confined: dict[str, Path]) -> None:
    shutil.copytree(default_model_dir(), confined["outside"] / "minilm")
    assert (
        "'..' is not allowed in model_dir"
        in _refusal(str(confined["weights"] / ".." / "outside" / "minilm")).message
    )
    (confined["weights"] / "link").symlink_to(confined["outside"] / "minilm")
    _refusal(str(confined["weights"] / "link"))
    _refusal("link")  # relative: looked up under the roots, then resolved


def test_a_model_dir_inside_the_weights_dir_or_a_data_root_loads(confined: dict[str, Path]) -> None:
    copy = shutil.copytree(default_model_dir(), confined["weights"] / "my-minilm")
    extractor = MiniLMTextExtractor({"model_dir": str(copy)})
    assert extractor.describe()["preprocessing"]["model"] == "my-minilm"
    relative = MiniLMTextExtractor({"model_dir": "my-minilm"})  # found under the weights directory
    assert relative.describe()["weights_sha256"] == extractor.describe()["weights_sha256"]
    inside_data = get_extractor("text-minilm", {"model_dir": str(confined["data"] / "not-yet")})
    with pytest.raises(TextModelError, match="does not exist"):  # inside the roots: say what is wrong
        inside_data.describe()


def test_without_data_roots_any_directory_may_be_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AUDITOR_DATA_ROOTS", raising=False)
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(tmp_path / "weights"))
    assert model_dir_roots(Settings()) is None
    copy = shutil.copytree(default_model_dir(), tmp_path / "anywhere" / "minilm")
    assert MiniLMTextExtractor({"model_dir": str(copy)}).describe()["dim"] == 384
    roots = model_dir_roots(Settings(data_roots=f"{tmp_path}/a:{tmp_path}/b", weights_dir=tmp_path / "w"))
    assert roots == [tmp_path / "w", tmp_path / "a", tmp_path / "b"]
