"""Image datasets on real pixels: scikit-learn's digits, written as PNG / JPEG / WebP folders."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset

from auditor.datasets.images import ImageSample, decode_image, decode_sample
from auditor.datasets.refs import resolve_dataset
from auditor.datasets.skips import SkipReport
from auditor.errors import DatasetFormatError, TooFewSamplesError

N_DIGITS = 60
SIDE = 32


def digit_pixels(n: int = N_DIGITS) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32, 32) uint8 digits upscaled from sklearn's 8x8 (values 0..16 -> 0..255) and their labels."""
    digits = load_digits()
    small = (digits.images[:n] * (255 / 16)).round().astype(np.uint8)
    big = small.repeat(SIDE // 8, axis=1).repeat(SIDE // 8, axis=2)
    return big, digits.target[:n]


def write_digit_folder(root: Path, extension: str = "png", n: int = N_DIGITS) -> dict[str, np.ndarray]:
    """A folder-per-class layout ``<label>/<index>.<ext>``; returns the grey pixels by key."""
    pixels, labels = digit_pixels(n)
    save_options = {"quality": 95} if extension == "jpg" else {}
    written = {}
    for index, (image, label) in enumerate(zip(pixels, labels, strict=True)):
        key = f"{label}/{index:03d}.{extension}"
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(root / key, **save_options)
        written[key] = image
    return written


def encode(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def test_png_folder_decodes_to_the_exact_pixels_with_folder_labels(tmp_path: Path) -> None:
    written = write_digit_folder(tmp_path / "digits")
    resolved = resolve_dataset(str(tmp_path / "digits"), options={"labels": "folder"})
    samples = resolved.image_samples()
    assert [s.key for s in samples] == sorted(written), "samples must come sorted by key"
    assert resolved.labels() == [key.split("/")[0] for key in sorted(written)]
    for sample in samples[:10]:
        decoded = decode_sample(sample)
        assert decoded.reason is None
        assert decoded.image is not None
        assert decoded.image.shape == (SIDE, SIDE, 3) and decoded.image.dtype == np.uint8
        for channel in range(3):
            np.testing.assert_array_equal(decoded.image[..., channel], written[sample.key])


def test_jpeg_decoding_matches_plain_pillow_not_a_draft_decode(tmp_path: Path) -> None:
    written = write_digit_folder(tmp_path / "jpegs", extension="jpg", n=12)
    resolved = resolve_dataset(str(tmp_path / "jpegs"))
    assert resolved.format == "image_folder" and resolved.modality == "image"
    for sample in resolved.image_samples():
        with Image.open(tmp_path / "jpegs" / sample.key) as reference:
            expected = np.asarray(reference.convert("RGB"))
        got = decode_image(sample.read_bytes())
        np.testing.assert_array_equal(got, expected)
        # lossy, but still the digit: quality 95 stays within a few grey levels on average
        assert np.abs(got[..., 0].astype(int) - written[sample.key]).mean() < 6


def test_decode_image_turns_every_mode_into_rgb() -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    rgba = np.dstack([grey, grey // 2, 255 - grey, np.full_like(grey, 7)])
    cases = {
        "L": Image.fromarray(grey, mode="L"),
        "RGBA": Image.fromarray(rgba, mode="RGBA"),
        "P": Image.fromarray(rgba[..., :3], mode="RGB").convert("P"),
        "LA": Image.fromarray(rgba[..., [0, 3]], mode="LA"),
    }
    for mode, image in cases.items():
        for format in ("PNG", "WEBP"):
            if format == "WEBP" and mode == "P":
                continue  # WebP stores palette images as RGB(A) anyway
            decoded = decode_image(encode(image, format))
            assert decoded.shape == (6, 8, 3), (mode, format, decoded.shape)
            assert decoded.dtype == np.uint8
    # alpha is dropped, not composited: an almost transparent pixel keeps its colour
    np.testing.assert_array_equal(decode_image(encode(cases["RGBA"], "PNG")), rgba[..., :3])
    np.testing.assert_array_equal(decode_image(encode(cases["L"], "PNG"))[..., 1], grey)


def test_webp_folder_is_read(tmp_path: Path) -> None:
    pixels, _ = digit_pixels(5)
    (tmp_path / "w").mkdir()
    for index, image in enumerate(pixels):
        Image.fromarray(image, mode="L").save(tmp_path / "w" / f"{index}.WEBP", lossless=True)
    (tmp_path / "w" / "notes.md").write_text("not an image")
    resolved = resolve_dataset(str(tmp_path / "w"))
    assert resolved.n_samples == 5 and resolved.ignored_files == 1
    decoded = decode_sample(resolved.image_samples()[2]).image
    assert decoded is not None
    np.testing.assert_array_equal(decoded[..., 0], pixels[2])


def corrupt_folder(root: Path, n_good: int, n_truncated: int, n_random: int) -> None:
    pixels, _ = digit_pixels(n_good + 1)
    root.mkdir(parents=True)
    for index, image in enumerate(pixels[:n_good]):
        Image.fromarray(image, mode="L").save(root / f"good-{index:03d}.png")
    jpeg = encode(Image.fromarray(pixels[-1], mode="L"), "JPEG")
    for index in range(n_truncated):
        (root / f"truncated-{index}.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    rng = np.random.default_rng(7)
    for index in range(n_random):
        (root / f"random-{index}.png").write_bytes(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())


def decode_all(samples: list[ImageSample]) -> SkipReport:
    report = SkipReport()
    for sample in samples:
        decoded = decode_sample(sample)
        if decoded.reason is None:
            report.record_ok()
        else:
            report.record_bad(sample.key, decoded.reason)
    return report


def test_corrupt_images_are_counted_and_allowed_below_the_threshold(tmp_path: Path) -> None:
    corrupt_folder(tmp_path / "mixed", n_good=38, n_truncated=1, n_random=1)
    resolved = resolve_dataset(str(tmp_path / "mixed"))
    report = decode_all(resolved.image_samples())
    assert report.seen == 40 and report.kept == 38
    assert report.counts == {"corrupt_image": 2}
    assert sorted(report.examples["corrupt_image"]) == ["random-0.png", "truncated-0.jpg"]
    report.enforce(resolved.options.max_bad_fraction, resolved.uri)  # 5% allowed: does not raise


def test_corrupt_images_past_the_threshold_fail_with_the_reasons(tmp_path: Path) -> None:
    corrupt_folder(tmp_path / "bad", n_good=30, n_truncated=4, n_random=6)
    resolved = resolve_dataset(str(tmp_path / "bad"), options={"max_bad_fraction": 0.2})
    samples = resolved.image_samples()
    # two "workers" decode halves; their reports merge into the dataset's
    workers = [decode_all(samples[::2]), decode_all(samples[1::2])]
    merged = workers[0].merge(workers[1])
    assert merged.seen == 40 and merged.skipped == 10
    assert len(merged.examples["corrupt_image"]) == 5, "examples are capped at 5"
    with pytest.raises(DatasetFormatError, match=r"10 of 40 samples \(25.0%\).*corrupt_image: 10"):
        resolved.enforce_skips(*workers)
    merged.enforce(0.25, resolved.uri)


def test_nothing_decodable_is_too_few_samples(tmp_path: Path) -> None:
    corrupt_folder(tmp_path / "junk", n_good=0, n_truncated=0, n_random=3)
    report = decode_all(resolve_dataset(str(tmp_path / "junk")).image_samples())
    with pytest.raises(TooFewSamplesError, match="all 3 samples were skipped"):
        report.enforce(0.99, "junk")


def test_members_over_max_member_bytes_are_skipped_as_too_large(tmp_path: Path) -> None:
    big = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(big, mode="L").save(tmp_path / "imgs" / "big.png")
    Image.fromarray(big[:8, :8], mode="L").save(tmp_path / "imgs" / "small.png")
    resolved = resolve_dataset(str(tmp_path / "imgs"), options={"max_member_bytes": 4096})
    reasons = {s.key: decode_sample(s).reason for s in resolved.image_samples()}
    assert reasons == {"big.png": "too_large", "small.png": None}


def test_a_zip_bomb_member_is_cut_off_at_max_member_bytes(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.png", b"\0" * (8 << 20))  # 8 MiB of zeros deflate to ~8 KiB
        archive.writestr("ok.png", encode(Image.new("L", (4, 4), 9), "PNG"))
    resolved = resolve_dataset(str(bomb), options={"max_member_bytes": 1 << 20})
    reasons = {s.key: decode_sample(s).reason for s in resolved.image_samples()}
    assert reasons == {"bomb.png": "too_large", "ok.png": None}


def test_labels_folder_needs_class_folders(tmp_path: Path) -> None:
    write_digit_folder(tmp_path / "d", n=4)
    Image.new("L", (4, 4)).save(tmp_path / "d" / "stray.png")
    with pytest.raises(DatasetFormatError, match=r"'stray\.png' is not"):
        resolve_dataset(str(tmp_path / "d"), options={"labels": "folder"})
    assert resolve_dataset(str(tmp_path / "d")).labels() is None


def test_max_samples_is_reproducible_and_independent_of_location(tmp_path: Path) -> None:
    write_digit_folder(tmp_path / "a", n=N_DIGITS)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    options = {"max_samples": 15, "seed": 3}
    first = [s.key for s in resolve_dataset(str(tmp_path / "a"), options=options).image_samples()]
    again = [s.key for s in resolve_dataset(str(tmp_path / "a"), options=options).image_samples()]
    moved = [
        s.key for s in resolve_dataset(str(tmp_path / "elsewhere" / "b"), options=options).image_samples()
    ]
    other_seed = resolve_dataset(str(tmp_path / "a"), options={"max_samples": 15, "seed": 4})
    everything = resolve_dataset(str(tmp_path / "a"))
    assert len(first) == 15 and first == again == moved
    assert first == sorted(first), "a subsample keeps the sorted key order"
    assert set(first) < {s.key for s in everything.image_samples()}
    assert [s.key for s in other_seed.image_samples()] != first
    assert other_seed.n_total == everything.n_total == N_DIGITS


class _Decoding(Dataset[tuple[int, np.ndarray]]):
    def __init__(self, samples: list[ImageSample]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray]:
        decoded = decode_sample(self.samples[index])
        assert decoded.image is not None
        return index, decoded.image


def test_dataloader_workers_decode_archive_samples_themselves(tmp_path: Path) -> None:
    write_digit_folder(tmp_path / "d", n=24)
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted((tmp_path / "d").rglob("*.png")):
            handle.write(path, path.relative_to(tmp_path / "d").as_posix())
    resolved = resolve_dataset(str(archive), options={"labels": "folder"})
    samples = resolved.image_samples()
    samples[0].read_bytes()  # the parent opens its handle first: workers must not share it
    assert len(pickle.dumps(samples)) < 10_000, "samples pickle without image bytes"
    loader = DataLoader(_Decoding(samples), batch_size=5, num_workers=2)
    decoded = {int(i): image for indices, images in loader for i, image in zip(indices, images, strict=True)}
    assert sorted(decoded) == list(range(24))
    for index, image in decoded.items():
        assert torch.equal(image, torch.from_numpy(decode_image(samples[index].read_bytes())))
    resolved.close()
