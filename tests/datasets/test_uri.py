"""References: schemes, data roots, symlinks, brace patterns and archive member names."""

from __future__ import annotations

import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from auditor.datasets.refs import resolve_dataset, resolve_local_path
from auditor.datasets.uri import (
    REMOTE_EXTRA_INSTALL,
    MissingExtraError,
    PathNotAllowedError,
    SchemeNotAllowedError,
    UnsupportedSchemeError,
    check_scheme,
    confine_local_path,
    expand_braces,
    parse_uri,
    safe_member_key,
)
from auditor.errors import BadInputError, DatasetFormatError, DatasetNotFoundError


def png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), value).save(path)
    return path


def test_parse_uri_tells_local_from_remote() -> None:
    assert parse_uri("/data/x.npy").scheme == "file"
    assert parse_uri("relative/x.npy").path == "relative/x.npy"
    assert parse_uri("file:///data/my%20images").path == "/data/my images"
    assert parse_uri("C:\\data\\x.npy").scheme == "file"
    remote = parse_uri("S3://bucket/key.npy")
    assert (remote.scheme, remote.is_local, remote.path) == ("s3", False, "S3://bucket/key.npy")


def test_remote_schemes_must_be_enabled_and_known() -> None:
    check_scheme(parse_uri("/local/x.npy"), allowed_schemes=())
    check_scheme(parse_uri("https://example.org/x.npy"), allowed_schemes={"https"})
    with pytest.raises(
        SchemeNotAllowedError, match=r"'s3' is not enabled here.*enabled remote schemes: none"
    ):
        check_scheme(parse_uri("s3://bucket/x.npy"), allowed_schemes=())
    assert SchemeNotAllowedError.http_status == 403 and issubclass(SchemeNotAllowedError, BadInputError)
    with pytest.raises(UnsupportedSchemeError, match="unsupported scheme 'ftp'") as caught:
        check_scheme(parse_uri("ftp://example.org/x.npy"), allowed_schemes={"ftp"})
    assert isinstance(caught.value, DatasetFormatError)
    with pytest.raises(SchemeNotAllowedError):
        resolve_dataset("memory://d/x.txt")


def test_a_missing_remote_extra_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dev install has s3fs: hide it, as on a machine without the extra.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "s3fs" else real_find_spec(name, *a)
    )
    with pytest.raises(MissingExtraError, match="s3fs") as caught:
        resolve_dataset("s3://bucket/embeddings.npy", allowed_schemes={"s3"})
    assert REMOTE_EXTRA_INSTALL in caught.value.message
    assert REMOTE_EXTRA_INSTALL == 'pip install "synthetic-data-auditor[remote]"'


def test_paths_with_dotdot_are_refused_inside_data_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    png(root / "a" / "x.png")
    png(tmp_path / "secret" / "y.png")
    with pytest.raises(PathNotAllowedError, match=r"'\.\.' is not allowed"):
        confine_local_path(str(root / "a" / ".." / "a"), [root])
    with pytest.raises(PathNotAllowedError, match=r"'\.\.' is not allowed"):
        resolve_dataset(str(root / ".." / "secret"), data_roots=[root])
    with pytest.raises(PathNotAllowedError, match="outside the allowed data roots"):
        resolve_dataset(str(tmp_path / "secret"), data_roots=[root])
    assert PathNotAllowedError.http_status == 403


def test_relative_paths_are_looked_up_under_each_root(tmp_path: Path) -> None:
    first, second = tmp_path / "r1", tmp_path / "r2"
    first.mkdir()
    png(second / "imgs" / "x.png")
    assert confine_local_path("imgs", [first, second]) == (second / "imgs").resolve()
    resolved = resolve_dataset("imgs", data_roots=[first, second])
    assert resolved.n_samples == 1
    with pytest.raises(DatasetNotFoundError):
        resolve_dataset("nothing-here", data_roots=[first, second])


def test_a_symlink_to_outside_the_roots_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = png(tmp_path / "outside" / "leak.png")
    (root / "link.png").symlink_to(outside)
    (root / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(PathNotAllowedError, match="outside the allowed data roots"):
        resolve_local_path(str(root / "link.png"), [root])
    with pytest.raises(PathNotAllowedError):
        resolve_dataset(str(root / "linkdir"), data_roots=[root])
    # unrestricted (the local CLI): links are followed
    assert resolve_dataset(str(root / "linkdir")).n_samples == 1


def test_symlinks_met_while_walking_a_folder_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    png(root / "data" / "cls" / "a.png", 1)
    png(root / "shared" / "b.png", 2)
    outside = png(tmp_path / "outside" / "c.png", 3)
    (root / "data" / "cls" / "inside.png").symlink_to(root / "shared" / "b.png")
    (root / "data" / "loop").symlink_to(root / "data", target_is_directory=True)
    resolved = resolve_dataset(str(root / "data"), data_roots=[root])
    assert [s.key for s in resolved.image_samples()] == ["cls/a.png", "cls/inside.png"]
    (root / "data" / "cls" / "escape.png").symlink_to(outside)
    with pytest.raises(PathNotAllowedError, match=r"cls/escape\.png is a symlink to .*outside"):
        resolve_dataset(str(root / "data"), data_roots=[root])


def test_brace_patterns_expand_like_webdataset_shard_lists() -> None:
    assert expand_braces("shard-{000..003}.tar") == [f"shard-{i:03d}.tar" for i in range(4)]
    assert expand_braces("s-{8..11}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"]
    assert expand_braces("{train,val}-{0..1}.tar") == ["train-0.tar", "train-1.tar", "val-0.tar", "val-1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(DatasetFormatError, match="cannot expand"):
        expand_braces("x-{abc}.tar")


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../up.png", "a/../../b.png", "C:\\win\\x.png", "a\\..\\..\\b"]
)
def test_unsafe_member_names_are_refused(name: str) -> None:
    with pytest.raises(PathNotAllowedError, match="unsafe member name"):
        safe_member_key(name, "x.zip")


def test_safe_member_names_are_cleaned() -> None:
    assert safe_member_key("./cls/a.png", "x.tar") == "cls/a.png"
    assert safe_member_key("cls\\b.png", "x.zip") == "cls/b.png"


def test_archives_with_absolute_or_parent_member_names_are_refused(tmp_path: Path) -> None:
    image = png(tmp_path / "x.png")
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.write(image, "fine.png")
        archive.writestr("../../escape.png", image.read_bytes())  # writestr keeps the name as given
    with pytest.raises(PathNotAllowedError, match=r"evil\.zip: unsafe member name '\.\./\.\./escape\.png'"):
        resolve_dataset(str(tmp_path / "evil.zip"))
    with zipfile.ZipFile(tmp_path / "abs.zip", "w") as archive:
        archive.writestr(zipfile.ZipInfo("/abs/escape.png"), image.read_bytes())
    with pytest.raises(PathNotAllowedError, match=r"unsafe member name '/abs/escape\.png'"):
        resolve_dataset(str(tmp_path / "abs.zip"))
    for name in ("/abs/escape.png", "../escape.png"):
        with tarfile.open(tmp_path / "evil.tar", "w") as archive:
            info = archive.gettarinfo(image, arcname="ok.png")
            archive.addfile(info, io.BytesIO(image.read_bytes()))
            info.name = name
            archive.addfile(info, io.BytesIO(image.read_bytes()))
        with pytest.raises(PathNotAllowedError, match="unsafe member name"):
            resolve_dataset(str(tmp_path / "evil.tar"))
