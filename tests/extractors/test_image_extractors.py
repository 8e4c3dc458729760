"""The image extractors and their shared loader on real images: scikit-learn's digits as PNG, JPEG, zip, tar.

Weights are seeded random state dicts with the official key sets (tests/helpers/digit_images.py says how
the extractors are pointed at them). References: pytorch-fid's own image path (``ImagePathDataset`` +
DataLoader + its ``InceptionV3``, built from its installed source) for ``inception-v3-fid``, and dgm-eval's
DINOv2 transform (PIL bicubic 224x224, ToTensor, ImageNet Normalize) written out with Pillow for DINOv2.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.digit_images import (
    digit_pixels,
    spec_for_file,
    write_dinov2_weights,
    write_image_folder,
    write_tar,
    write_zip,
)
from helpers.pytorch_fid_reference import (
    load_pytorch_fid_inception,
    random_fid_state_dict,
    write_fid_weights_file,
)
from PIL import Image
from pytorch_fid.fid_score import ImagePathDataset
from torch import Tensor

from auditor.datasets.refs import WrongModalityError
from auditor.errors import DatasetFormatError
from auditor.extractors import EXTRACTORS, RECOMMENDED_IMAGE_EXTRACTOR, get_extractor
from auditor.extractors.base import FeatureExtractor, LoadedDataset
from auditor.extractors.dinov2 import Dinov2Preprocessing, Dinov2VitB14Extractor, Dinov2VitL14Extractor
from auditor.extractors.images import (
    ExtractorOptionError,
    GpuDecodeUnavailableError,
    ImageBatch,
    ImageExtractorOptions,
    ImagePreprocessing,
    batch_on_device,
    iter_image_batches,
)
from auditor.extractors.inception import FidInceptionPreprocessing, InceptionV3FidExtractor
from auditor.extractors.networks.dinov2 import (
    DINOV2_VITB14,
    DINOV2_VITB14_WEIGHTS,
    DINOV2_VITL14,
    DINOV2_VITL14_WEIGHTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_dinov2,
)
from auditor.extractors.networks.inception import FID_INCEPTION_WEIGHTS, build_fid_inception
from auditor.extractors.weights import WeightsNotFoundError, load_state_dict
from auditor.pipeline.progress import NullProgress, RecordingProgress
from auditor.pipeline.spec import DatasetRef
from auditor.pipeline.stages import cache_key, load_reference

N_IMAGES = 6
WEIGHTS_SEED = 7
# |a - b| <= ATOL + RTOL * |b| on features of order 0.01-80 (random weights): the same network on the same
# pixels, where only the summation order of the convolutions differs (NHWC kernels, another batch size);
# observed: 5e-5 at most.
FEATURE_RTOL = 1e-4
FEATURE_ATOL = 1e-4


# --- data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PNG and JPEG folders of the same 6 digits, and the PNG folder as a zip and a tar."""
    root = tmp_path_factory.mktemp("digits")
    pixels = digit_pixels(0, N_IMAGES)
    write_image_folder(root / "png", pixels, "png")
    write_image_folder(root / "jpg", pixels, "jpg")
    write_zip(root / "digits.zip", root / "png")
    write_tar(root / "digits.tar", root / "png")
    return root


def load(uri: Path, side: str = "real", **options: object) -> LoadedDataset:
    return load_reference(side, DatasetRef(uri=str(uri), options=dict(options)))


def pillow_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))


def to_tensor(pixels: np.ndarray) -> Tensor:
    """torchvision's ToTensor on an RGB image: CHW, contiguous, ``float()`` then ``div(255)``."""
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous().float().div(255)


def all_batches(
    dataset: LoadedDataset, options: ImageExtractorOptions, prep: ImagePreprocessing
) -> list[ImageBatch]:
    return list(iter_image_batches(dataset, prep, options, NullProgress()))


def stacked(batches: list[ImageBatch]) -> Tensor:
    return torch.cat([batch.images for batch in batches if batch.images is not None])


def folder_images(folder: Path) -> list[np.ndarray]:
    return [pillow_rgb(path) for path in sorted(folder.iterdir())]


# --- the shared loader (no network) ------------------------------------------------------------------------


def test_loader_batches_are_the_pillow_pixels_as_uint8_in_sample_order(image_root: Path) -> None:
    options = ImageExtractorOptions(batch_size=4, num_workers=2)
    batches = all_batches(load(image_root / "png"), options, FidInceptionPreprocessing())
    assert [batch.seen for batch in batches] == [4, 2]
    assert [pos for batch in batches for pos in batch.positions] == list(range(N_IMAGES))
    images = stacked(batches)
    assert images.dtype == torch.uint8 and images.shape == (N_IMAGES, 3, 32, 32)
    assert images.is_contiguous(memory_format=torch.channels_last), "stacked NHWC, viewed as NCHW"
    expected = torch.stack([to_tensor(p) for p in folder_images(image_root / "png")])
    assert torch.equal(images.float().div(255), expected)


@pytest.mark.parametrize("archive", ["digits.zip", "digits.tar"])
def test_archives_give_the_same_batches_as_the_folder(image_root: Path, archive: str) -> None:
    options = ImageExtractorOptions(batch_size=5, num_workers=2)
    folder = stacked(all_batches(load(image_root / "png"), options, FidInceptionPreprocessing()))
    packed = stacked(all_batches(load(image_root / archive), options, FidInceptionPreprocessing()))
    assert torch.equal(packed, folder)


def test_worker_count_and_batch_size_do_not_change_the_pixels(image_root: Path) -> None:
    dataset = load(image_root / "jpg")
    runs = {
        (batch_size, workers): stacked(
            all_batches(
                dataset,
                ImageExtractorOptions(batch_size=batch_size, num_workers=workers),
                Dinov2Preprocessing(),
            )
        )
        for batch_size, workers in [(4, 0), (4, 2), (6, 0), (1, 2)]
    }
    reference = runs[(4, 0)]
    for setting, images in runs.items():
        assert torch.equal(images, reference), f"{setting} differs from (4, 0)"


def test_dinov2_worker_resize_is_dgm_evals_pillow_bicubic_224(image_root: Path) -> None:
    batches = all_batches(
        load(image_root / "jpg"), ImageExtractorOptions(batch_size=4), Dinov2Preprocessing()
    )
    images = stacked(batches)
    assert images.dtype == torch.uint8 and images.shape == (N_IMAGES, 3, 224, 224)
    for row, path in enumerate(sorted((image_root / "jpg").iterdir())):
        with Image.open(path) as image:
            expected = np.array(image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC))
        assert torch.equal(images[row], torch.from_numpy(expected).permute(2, 0, 1))


def test_a_batch_of_mixed_sizes_travels_as_uint8_and_is_resized_per_image_on_the_device(
    tmp_path: Path,
) -> None:
    small, large = digit_pixels(0, 3, side=32), digit_pixels(3, 3, side=48)
    write_image_folder(tmp_path / "mixed", [*small, *large])
    prep = FidInceptionPreprocessing()
    (batch,) = all_batches(load(tmp_path / "mixed"), ImageExtractorOptions(batch_size=6), prep)
    assert (
        batch.images is None
        and [tuple(part.shape) for part in batch.parts] == [(32, 32, 3)] * 3 + [(48, 48, 3)] * 3
    )
    assert all(part.dtype == torch.uint8 for part in batch.parts)
    on_device = batch_on_device(batch, prep, torch.device("cpu"))
    assert on_device is not None and on_device.shape == (6, 3, 299, 299) and on_device.dtype == torch.float32
    for row, pixels in enumerate(folder_images(tmp_path / "mixed")):
        # pytorch-fid's network on this one image: ToTensor, then bilinear to 299x299.
        expected = F.interpolate(
            to_tensor(pixels)[None], size=(299, 299), mode="bilinear", align_corners=False
        )
        assert torch.equal(on_device[row], expected[0])


def write_with_corrupt_files(folder: Path, n_good: int) -> list[str]:
    write_image_folder(folder, digit_pixels(0, n_good))
    png = (folder / "0000.png").read_bytes()
    (folder / "x_garbage.png").write_bytes(b"this is not an image")
    (folder / "x_truncated.png").write_bytes(png[: len(png) // 2])
    return ["x_garbage.png", "x_truncated.png"]


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_files_are_counted_per_worker_and_recorded_on_the_dataset(
    tmp_path: Path, workers: int
) -> None:
    bad = write_with_corrupt_files(tmp_path / "digits", n_good=10)
    dataset = load(tmp_path / "digits", max_bad_fraction=0.25)
    progress = RecordingProgress()
    options = ImageExtractorOptions(batch_size=3, num_workers=workers)
    batches = list(iter_image_batches(dataset, FidInceptionPreprocessing(), options, progress))
    assert stacked(batches).shape[0] == 10
    assert dataset.resolved is not None
    report = dataset.resolved.skipped.to_dict()
    assert report == {
        "seen": 12,
        "skipped": 2,
        "counts": {"corrupt_image": 2},
        "examples": {"corrupt_image": bad},
    }
    assert progress.events[0] == ("start", "embed:real", 12) and progress.events[-1][:2] == (
        "finish",
        "embed:real",
    )
    assert sum(n for kind, _, n in progress.events if kind == "advance") == 12
    # A second pass replaces the first pass's counts instead of adding to them.
    list(iter_image_batches(dataset, FidInceptionPreprocessing(), options, progress))
    assert dataset.resolved.skipped.to_dict() == report


def test_too_many_corrupt_files_fail_with_their_names(tmp_path: Path) -> None:
    write_with_corrupt_files(tmp_path / "digits", n_good=10)
    dataset = load(tmp_path / "digits")  # default max_bad_fraction 0.05 < 2/12
    with pytest.raises(DatasetFormatError, match=r"2 of 12 samples .* x_garbage\.png, x_truncated\.png"):
        list(
            iter_image_batches(dataset, FidInceptionPreprocessing(), ImageExtractorOptions(), NullProgress())
        )


# --- inception-v3-fid --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fid_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = random_fid_state_dict(torch.Generator().manual_seed(WEIGHTS_SEED))
    return write_fid_weights_file(tmp_path_factory.mktemp("torch_home"), state)


@pytest.fixture
def fid_weights(fid_weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The weights file where both torch.hub (pytorch-fid) and AUDITOR_WEIGHTS_DIR (ours) look."""
    spec = spec_for_file(FID_INCEPTION_WEIGHTS, fid_weights_file)
    monkeypatch.setattr(InceptionV3FidExtractor, "weights", spec)
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(fid_weights_file.parent))
    monkeypatch.setenv("TORCH_HOME", str(fid_weights_file.parents[2]))
    return fid_weights_file


def inception(**options: object) -> InceptionV3FidExtractor:
    return InceptionV3FidExtractor({"device": "cpu", **options})


def test_inception_features_are_pytorch_fids_image_path_features(fid_weights: Path, image_root: Path) -> None:
    """pytorch-fid's get_activations, step by step: ImagePathDataset with ToTensor, DataLoader, InceptionV3."""
    files = sorted((image_root / "jpg").iterdir())
    loader = torch.utils.data.DataLoader(
        ImagePathDataset(files, transforms=lambda im: to_tensor(np.array(im))), 4
    )
    reference_network = load_pytorch_fid_inception().InceptionV3([3], resize_input=True, normalize_input=True)
    with torch.no_grad():
        reference = torch.cat([reference_network.eval()(batch)[0].flatten(1) for batch in loader])
    ours = inception(batch_size=4, channels_last=False).embed(load(image_root / "jpg"), NullProgress())
    assert ours.shape == (N_IMAGES, 2048) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)


def test_inception_loader_adds_no_error_to_the_network_on_pillow_images(
    fid_weights: Path, image_root: Path
) -> None:
    network = build_fid_inception(load_state_dict(fid_weights))
    images = torch.stack([to_tensor(p) for p in folder_images(image_root / "png")])
    with torch.no_grad():
        direct = torch.cat([network(images[:4]), network(images[4:])])
    exact = inception(batch_size=4, channels_last=False).embed(load(image_root / "png"), NullProgress())
    assert torch.equal(exact, direct), f"max |diff| {(exact - direct).abs().max():.3g}"
    nhwc = inception(batch_size=4).embed(load(image_root / "png"), NullProgress())
    torch.testing.assert_close(nhwc, direct, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)


def test_inception_features_do_not_depend_on_workers_or_batch_size(
    fid_weights: Path, image_root: Path
) -> None:
    dataset = load(image_root / "digits.zip")
    extractor = inception(batch_size=4, num_workers=0)
    base = extractor.embed(dataset, NullProgress())
    assert torch.equal(extractor.embed(dataset, NullProgress()), base), "deterministic"
    with_workers = inception(batch_size=4, num_workers=2).embed(dataset, NullProgress())
    assert torch.equal(with_workers, base), "same batches, decoded in other processes: identical"
    one_batch = inception(batch_size=N_IMAGES, num_workers=2).embed(dataset, NullProgress())
    torch.testing.assert_close(one_batch, base, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)


def test_inception_mixed_sizes_match_the_network_per_image(fid_weights: Path, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "mixed", [*digit_pixels(0, 2, side=32), *digit_pixels(2, 2, side=48)])
    network = build_fid_inception(load_state_dict(fid_weights))
    with torch.no_grad():
        direct = torch.cat([network(to_tensor(p)[None]) for p in folder_images(tmp_path / "mixed")])
    ours = inception(batch_size=4).embed(load(tmp_path / "mixed"), NullProgress())
    torch.testing.assert_close(ours, direct, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)


def test_inception_skips_corrupt_files_and_keeps_row_order(fid_weights: Path, tmp_path: Path) -> None:
    write_with_corrupt_files(tmp_path / "digits", n_good=4)
    shutil.copytree(tmp_path / "digits", tmp_path / "clean", ignore=shutil.ignore_patterns("x_*"))
    dirty = inception(batch_size=3).embed(load(tmp_path / "digits", max_bad_fraction=0.5), NullProgress())
    clean = inception(batch_size=3).embed(load(tmp_path / "clean"), NullProgress())
    assert dirty.shape == (4, 2048)
    torch.testing.assert_close(dirty, clean, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)


def test_bfloat16_autocast_is_an_option_recorded_in_the_identity(fid_weights: Path, image_root: Path) -> None:
    dataset = load(image_root / "png", max_samples=2)
    exact, fast = inception(), inception(dtype="bfloat16")
    assert exact.describe()["preprocessing"]["dtype"] == "float32", "never the default for FID"
    assert fast.describe()["preprocessing"]["dtype"] == "bfloat16"
    assert cache_key(exact, dataset, dataset) != cache_key(fast, dataset, dataset)
    reference, approximate = exact.embed(dataset, NullProgress()), fast.embed(dataset, NullProgress())
    assert approximate.dtype == torch.float32
    relative = (approximate - reference).norm() / reference.norm()
    assert 0 < relative < 0.05, (
        f"bfloat16 features should be close to, not equal to, float32 ({relative:.3g})"
    )


# --- weights, identity, errors -----------------------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(empty))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    return empty


@pytest.mark.parametrize("name", ["inception-v3-fid", "dinov2-vitb14", "dinov2-vitl14"])
def test_construction_needs_no_weights_but_embedding_names_the_missing_file(
    no_weights: Path, image_root: Path, name: str
) -> None:
    extractor = get_extractor(name, {"device": "cuda:0"})  # cheap: no weights, no device touched
    spec = type(extractor).weights  # type: ignore[attr-defined]
    assert extractor.describe()["weights_sha256"] == spec.sha256
    with pytest.raises(
        WeightsNotFoundError, match=rf"{re.escape(spec.filename)}.*{re.escape(str(no_weights))}"
    ):
        extractor.check_weights()  # type: ignore[attr-defined]
    cpu_extractor = get_extractor(name, {"device": "cpu"})
    with pytest.raises(WeightsNotFoundError, match=spec.filename) as caught:
        cpu_extractor.embed(load(image_root / "png"), NullProgress())
    assert caught.value.details["filename"] == spec.filename


def test_a_text_dataset_is_refused_before_any_weights_are_looked_up(no_weights: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a line of text\nanother line\n", encoding="utf-8")
    with pytest.raises(WrongModalityError, match=r"'inception-v3-fid' reads image data.*text data"):
        inception().embed(load(corpus), NullProgress())


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("inception-v3-fid", {"batchsize": 8}, "batchsize"),
        ("inception-v3-fid", {"dtype": "float64"}, "dtype"),
        ("dinov2-vitb14", {"num_workers": -1}, "num_workers"),
        ("dinov2-vitb14", {"decoder": "nvjpeg"}, "resizes with Pillow"),
    ],
)
def test_bad_options_fail_at_construction(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ExtractorOptionError, match=message):
        get_extractor(name, options)


def test_gpu_jpeg_decoding_needs_cuda(fid_weights: Path, image_root: Path) -> None:
    extractor = inception(decoder="nvjpeg")
    assert extractor.describe()["preprocessing"]["decoder"] == "nvjpeg", "decoded pixels differ: new identity"
    with pytest.raises(GpuDecodeUnavailableError, match="needs a CUDA device"):
        extractor.embed(load(image_root / "jpg"), NullProgress())


def test_describe_is_the_identity_without_the_device() -> None:
    on_cpu, on_gpu = (
        inception(),
        InceptionV3FidExtractor({"device": "cuda:0", "batch_size": 7, "num_workers": 1}),
    )
    described = on_cpu.describe()
    assert described == on_gpu.describe()
    assert set(described) == {"name", "version", "dim", "weights_sha256", "preprocessing"}
    assert (described["name"], described["dim"]) == ("inception-v3-fid", 2048)
    assert described["weights_sha256"] == FID_INCEPTION_WEIGHTS.sha256


def test_the_registry_holds_every_image_extractor_as_a_feature_extractor() -> None:
    for name in ("inception-v3-fid", "dinov2-vitb14", "dinov2-vitl14"):
        extractor = EXTRACTORS[name]({})
        assert isinstance(extractor, FeatureExtractor)
        assert (extractor.name, extractor.modality) == (name, "image")
        assert extractor.accepts == frozenset({"image"})  # type: ignore[attr-defined]
        assert extractor.cacheable and not extractor.fits_on_real  # type: ignore[attr-defined]
    assert RECOMMENDED_IMAGE_EXTRACTOR == "dinov2-vitb14"
    assert get_extractor("dinov2-vitl14").describe()["dim"] == 1024


# --- DINOv2 ------------------------------------------------------------------------------------------------


@pytest.fixture
def vitb14_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_dinov2_weights(tmp_path, DINOV2_VITB14_WEIGHTS.filename, DINOV2_VITB14, WEIGHTS_SEED)
    monkeypatch.setattr(Dinov2VitB14Extractor, "weights", spec_for_file(DINOV2_VITB14_WEIGHTS, path))
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(tmp_path))
    return path


def dgm_eval_dinov2_input(path: Path) -> Tensor:
    """dgm-eval's DINOv2Encoder.transform on ``Image.open(path).convert('RGB')``, with Pillow and torch."""
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (to_tensor(np.array(resized)) - mean) / std


def test_dinov2_vitb14_features_are_the_cls_token_of_dgm_evals_input(
    vitb14_weights: Path, image_root: Path
) -> None:
    dataset = load(image_root / "jpg", max_samples=4)
    assert dataset.resolved is not None
    files = [image_root / "jpg" / sample.key for sample in dataset.resolved.image_samples()]
    network = build_dinov2(DINOV2_VITB14, load_state_dict(vitb14_weights))
    with torch.no_grad():
        direct = network(torch.stack([dgm_eval_dinov2_input(path) for path in files]))
    progress = RecordingProgress()
    ours = Dinov2VitB14Extractor({"batch_size": 4, "num_workers": 2}).embed(dataset, progress)
    assert ours.shape == (4, 768) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, direct, rtol=FEATURE_RTOL, atol=FEATURE_ATOL)
    assert progress.stages == ["embed:real"]


@pytest.mark.slow
def test_dinov2_vitl14_embeds_with_its_own_weights(tmp_path: Path, image_root: Path) -> None:
    path = write_dinov2_weights(tmp_path, DINOV2_VITL14_WEIGHTS.filename, DINOV2_VITL14, WEIGHTS_SEED)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Dinov2VitL14Extractor, "weights", spec_for_file(DINOV2_VITL14_WEIGHTS, path))
        patch.setenv("AUDITOR_WEIGHTS_DIR", str(tmp_path))
        features = Dinov2VitL14Extractor({}).embed(load(image_root / "png", max_samples=2), NullProgress())
    assert features.shape == (2, 1024) and torch.isfinite(features).all()
