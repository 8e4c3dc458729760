"""The image pipeline every image extractor shares: decode in DataLoader workers, batch, embed on the device.

Flow of one dataset side::

    resolved.image_samples()          picklable; worker i reads and decodes sample i itself
      -> worker: decode_sample        Pillow, RGB; failures become (key, reason), never exceptions
      -> worker: prep.in_worker       per image, uint8 -> uint8 (DINOv2: Pillow bicubic to 224x224)
      -> worker: collate              same-size images stack as uint8 (B, 3, H, W) with channels-last
                                      strides; a batch of mixed sizes stays a list of uint8 images
      -> parent: to the device        (pinned on CUDA); a mixed batch is brought to one size there, per
                                      image, by prep.to_common_size; prep.network_input; the network
      -> (n_kept, dim) float32 on the CPU, rows in image_samples() order minus the skipped samples

Only uint8 crosses the loader: decoded pixels are exact in uint8 and a quarter of float32's size, which is
what the worker -> parent shared-memory copy and the host -> GPU copy move. Float work (conversion,
interpolation) happens on the device, in the process that runs the network: bilinear interpolation on the
CPU rounds differently with another thread count (a loader worker has one thread), so resizing there
would tie the features to where the resize ran. The FID Inception resizes inside the network, as
pytorch-fid does (see :mod:`auditor.extractors.inception`).

Bad samples: each batch carries the :class:`SkipReport` of its samples (counted in the worker that decoded
them); the parent merges them, records the result on ``resolved.skipped`` (so the result document shows
it) and raises past the dataset's ``max_bad_fraction``.

Options (``extractor_options``; ``device`` is injected by the pipeline):

==================  ==========  =========================================================================
option              default     meaning
==================  ==========  =========================================================================
``batch_size``      64          images per forward pass (does not change features beyond rounding)
``num_workers``     min(4, n)   decoding processes (n = CPU count); 0 decodes in the calling process
``dtype``           float32     ``bfloat16`` / ``float16`` run the network under autocast (changes
                                features: recorded in ``describe()``; never the default)
``decoder``         pillow      ``nvjpeg``: JPEGs decoded on the GPU by torchvision (CUDA only; changes
                                pixels slightly, so it is recorded in ``describe()``)
``channels_last``   true        NHWC convolutions (faster on CPU and GPU; rounding-level differences)
==================  ==========  =========================================================================
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from auditor.config import get_settings
from auditor.datasets.images import ImageSample, decode_sample
from auditor.datasets.refs import ResolvedDataset, require_modality
from auditor.datasets.skips import SkipReport
from auditor.datasets.sources import MemberTooLargeError
from auditor.errors import BadInputError, describe_validation_error
from auditor.extractors.base import LoadedDataset
from auditor.extractors.weights import WeightsSpec, load_state_dict, resolve_weights
from auditor.pipeline.progress import ProgressReporter

DEFAULT_BATCH_SIZE = 64
MAX_DEFAULT_WORKERS = 4
AUTOCAST_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_JPEG_MAGIC = b"\xff\xd8\xff"
DEVICE_PATTERN = "^(cpu|cuda(:[0-9]+)?)$"  # what AuditSpec.device resolves to


class ExtractorOptionError(BadInputError):
    code = "invalid_extractor_option"


class GpuDecodeUnavailableError(BadInputError):
    code = "gpu_decode_unavailable"


# --- options -----------------------------------------------------------------------------------------------

OptionsT = TypeVar("OptionsT", bound=BaseModel)


def parse_extractor_options(model: type[OptionsT], options: Mapping[str, Any] | None, name: str) -> OptionsT:
    """Validated options; unknown keys are refused, so a misspelt option cannot be silently ignored."""
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        raise ExtractorOptionError(
            f"invalid options for extractor {name!r}: {describe_validation_error(exc, root='options')}",
            details={"extractor": name, "options": {k: repr(v) for k, v in (options or {}).items()}},
        ) from exc


class ImageExtractorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field("cpu", pattern=DEVICE_PATTERN)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=4096)
    num_workers: int | None = Field(None, ge=0, le=64)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    decoder: Literal["pillow", "nvjpeg"] = "pillow"
    channels_last: bool = True


def default_num_workers() -> int:
    return min(MAX_DEFAULT_WORKERS, os.cpu_count() or 1)


def usable_num_workers(requested: int | None) -> int:
    """Loader processes to start: 0 inside a daemonic process (a Celery prefork child), which may not
    have children of its own, so decoding runs in that process instead of failing."""
    if multiprocessing.current_process().daemon:
        return 0
    return default_num_workers() if requested is None else requested


# --- per-network preprocessing ----------------------------------------------------------------------------


class ImagePreprocessing(Protocol):
    """How decoded pixels become one network's input. Implementations are picklable (they run in workers).

    ``in_worker``: (H, W, 3) uint8 -> (h, w, 3) uint8, per image, in a loader worker (e.g. a PIL resize).
    ``to_common_size``: (3, H, W) uint8 images of different sizes, on the device -> (B, 3, S, S) float in
    [0, 1] at the size the network reads, for a batch that cannot be stacked as it is.
    ``network_input``: a (B, 3, H, W) batch, uint8 or float [0, 1], on the device -> the network's input.
    ``decodes_on_gpu``: whether images may skip ``in_worker`` (JPEGs decoded on the GPU never reach it).
    """

    @property
    def decodes_on_gpu(self) -> bool: ...

    def in_worker(self, pixels: np.ndarray) -> np.ndarray: ...

    def to_common_size(self, images: Sequence[Tensor]) -> Tensor: ...

    def network_input(self, batch: Tensor) -> Tensor: ...


def to_unit_float(batch: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 [0, 1] exactly as torchvision's ToTensor (``float()`` then ``div(255)``)."""
    return batch.float().div(255) if batch.dtype == torch.uint8 else batch


# --- worker side -------------------------------------------------------------------------------------------


class LoadedImage(NamedTuple):
    """One sample after a worker looked at it: pixels (HWC uint8), or the encoded JPEG (nvjpeg), or the
    reason it was skipped."""

    position: int
    key: str
    pixels: np.ndarray | None
    encoded: np.ndarray | None
    reason: str | None


@dataclass
class ImageBatch:
    """What one loader batch hands the parent.

    ``images``: the kept images stacked, (k, 3, H, W) uint8, when they share one size. ``parts``
    otherwise (mixed sizes, or nvjpeg mode): per kept image, (H, W, 3) uint8 pixels or, nvjpeg mode only,
    the encoded JPEG (1-d uint8). Both are empty when every sample was skipped. ``positions``: the kept
    samples' indices, ascending.
    """

    positions: list[int]
    seen: int
    skips: SkipReport
    images: Tensor | None = None
    parts: list[Tensor] = field(default_factory=list)

    def pin_memory(self) -> ImageBatch:
        # DataLoader(pin_memory=True) calls this in its pinning thread: page-locked host memory makes the
        # host -> GPU copy asynchronous.
        images = self.images.pin_memory() if self.images is not None else None
        return ImageBatch(self.positions, self.seen, self.skips, images, [p.pin_memory() for p in self.parts])


class ImageSampleDataset(Dataset[LoadedImage]):
    """Sample ``i`` of a resolved dataset, read and decoded in whichever process asks (a loader worker)."""

    def __init__(
        self, samples: Sequence[ImageSample], preprocessing: ImagePreprocessing, keep_jpeg: bool
    ) -> None:
        self.samples = samples
        self.preprocessing = preprocessing
        self.keep_jpeg = keep_jpeg

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> LoadedImage:
        sample = self.samples[index]
        if self.keep_jpeg:
            encoded = read_jpeg_for_gpu(sample)
            if encoded is not None:
                return LoadedImage(index, sample.key, None, encoded[0], encoded[1])
        decoded = decode_sample(sample)
        if decoded.image is None:
            return LoadedImage(index, sample.key, None, None, decoded.reason)
        return LoadedImage(index, sample.key, self.preprocessing.in_worker(decoded.image), None, None)


def read_jpeg_for_gpu(sample: ImageSample) -> tuple[np.ndarray | None, str | None] | None:
    """(encoded bytes, None) for a JPEG to decode on the GPU, (None, reason) for one that must be skipped,
    None for anything else (decoded by Pillow as usual).

    The header is parsed on the CPU (cheap) so that a decompression bomb is refused here, as the Pillow
    path refuses it, instead of exhausting GPU memory.
    """
    try:
        data = sample.read_bytes()
    except MemberTooLargeError:
        return None, "too_large"
    except (OSError, KeyError, EOFError):
        return None, "unreadable"
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            mode = header.mode
    except (OSError, ValueError, SyntaxError):
        return None, "corrupt_image"
    if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
        return None, "too_large"
    if mode not in ("L", "RGB"):
        return None  # CMYK / YCCK JPEGs: Pillow converts them; nvjpeg's RGB output would differ
    return np.frombuffer(data, dtype=np.uint8).copy(), None


@dataclass(frozen=True)
class CollateImages:
    """Runs in the worker: counts the skipped samples and stacks the rest (see :class:`ImageBatch`)."""

    keep_jpeg: bool

    def __call__(self, items: Sequence[LoadedImage]) -> ImageBatch:
        skips = SkipReport()
        kept = []
        for item in items:
            if item.reason is not None:
                skips.record_bad(item.key, item.reason)
            else:
                skips.record_ok()
                kept.append(item)
        batch = ImageBatch([item.position for item in kept], len(items), skips)
        arrays = [_pixels_or_encoded(item) for item in kept]
        if not self.keep_jpeg and len({array.shape for array in arrays}) == 1:
            # (B, H, W, 3) -> (B, 3, H, W) is a view with channels-last strides: no copy.
            batch.images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        else:
            batch.parts = [torch.from_numpy(array) for array in arrays]
        return batch


def _pixels_or_encoded(item: LoadedImage) -> np.ndarray:
    chosen = item.encoded if item.encoded is not None else item.pixels
    if chosen is None:  # collate only keeps items without a skip reason, which always have one of them
        raise RuntimeError(f"sample {item.key} has neither pixels nor encoded bytes")
    return chosen


# --- parent side -------------------------------------------------------------------------------------------


def image_loader(
    samples: Sequence[ImageSample],
    preprocessing: ImagePreprocessing,
    options: ImageExtractorOptions,
) -> DataLoader[LoadedImage]:
    """The DataLoader over ``samples``: in order, batched, decoded in worker processes."""
    keep_jpeg = options.decoder == "nvjpeg"
    workers = usable_num_workers(options.num_workers)
    return DataLoader(
        ImageSampleDataset(samples, preprocessing, keep_jpeg),
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=CollateImages(keep_jpeg),
        pin_memory=torch.device(options.device).type == "cuda",
    )


def iter_image_batches(
    dataset: LoadedDataset,
    preprocessing: ImagePreprocessing,
    options: ImageExtractorOptions,
    progress: ProgressReporter,
) -> Iterator[ImageBatch]:
    """Every batch of ``dataset`` in order, with progress under ``embed:<side>``; after the last batch the
    skipped samples are recorded on ``dataset.resolved.skipped`` and checked against ``max_bad_fraction``."""
    resolved = require_resolved(dataset)
    samples = resolved.image_samples()
    stage = f"embed:{dataset.side}"
    progress.start(stage, len(samples))
    skips = SkipReport()
    for batch in image_loader(samples, preprocessing, options):
        yield batch
        # Merged after the consumer had the batch: GPU decoding may have found more bad samples in it.
        skips = skips.merge(batch.skips)
        progress.advance(stage, batch.seen)
    progress.finish(stage)
    resolved.record_loader_skips(skips)


def require_resolved(dataset: LoadedDataset) -> ResolvedDataset:
    if dataset.resolved is None:
        raise BadInputError(
            f"the {dataset.side} dataset {dataset.reference!r} was not resolved; image and text extractors "
            "read datasets through auditor.datasets (load it with auditor.pipeline.stages.load_reference)",
            details={"side": dataset.side},
        )
    return dataset.resolved


# --- GPU JPEG decoding -------------------------------------------------------------------------------------

GpuDecode = Callable[[list[Tensor]], list[Tensor | None]]


def nvjpeg_decoder(device: torch.device) -> GpuDecode:
    """A function decoding encoded JPEGs (1-d uint8 CPU tensors) to (3, H, W) uint8 RGB on ``device``
    (None for a JPEG the GPU decoder rejects), through ``torchvision.io.decode_jpeg``.

    torchvision is optional and often broken (a build that does not match torch raises RuntimeError on
    import), so it is imported here and tried once on a tiny JPEG before any data is read.
    """
    if device.type != "cuda":
        raise GpuDecodeUnavailableError(
            f"decoder='nvjpeg' decodes JPEGs on the GPU and needs a CUDA device; this audit runs on "
            f"{device}. Use decoder='pillow' (the default)",
            details={"device": str(device)},
        )
    try:
        from torchvision.io import ImageReadMode, decode_jpeg

        decode_jpeg([torch.from_numpy(_tiny_jpeg())], device=device, mode=ImageReadMode.RGB)
    except Exception as exc:  # ImportError, or RuntimeError from a torchvision whose ops do not match torch
        raise GpuDecodeUnavailableError(
            f"decoder='nvjpeg' needs a working torchvision matching torch {torch.__version__} "
            f"(pip install 'synthetic-data-auditor[gpu]'): {type(exc).__name__}: {exc}",
            details={"install": "pip install 'synthetic-data-auditor[gpu]'"},
        ) from exc

    def decode_one(encoded: Tensor) -> Tensor | None:
        try:
            return decode_jpeg(encoded, device=device, mode=ImageReadMode.RGB)
        except RuntimeError:
            return None

    def decode(encoded: list[Tensor]) -> list[Tensor | None]:
        try:
            return list(decode_jpeg(encoded, device=device, mode=ImageReadMode.RGB))
        except RuntimeError:
            # One corrupt file fails the whole batched call: find it by decoding one at a time.
            return [decode_one(item) for item in encoded]

    return decode


def _tiny_jpeg() -> np.ndarray:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (128, 64, 32)).save(buffer, format="JPEG")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8).copy()


def batch_on_device(
    batch: ImageBatch,
    preprocessing: ImagePreprocessing,
    device: torch.device,
    decode: GpuDecode | None = None,
    samples: Sequence[ImageSample] = (),
) -> Tensor | None:
    """The batch's images as one (k, 3, H, W) tensor on ``device`` (None if every sample was skipped).

    A stacked batch is copied as it is. Parts are decoded on the GPU where encoded (``decode``; JPEGs it
    rejects move from kept to ``corrupt_image`` in ``batch.skips`` and leave ``batch.positions``), then
    stacked, or brought to one size by ``preprocessing.to_common_size``.
    """
    if batch.images is not None:
        return batch.images.to(device, non_blocking=True)
    images = [_part_on_device(part, device) for part in batch.parts]
    encoded_at = [i for i, part in enumerate(batch.parts) if part.ndim == 1]
    if encoded_at:
        if decode is None:
            raise RuntimeError("a batch holds encoded JPEGs but no GPU decoder was given")
        for i, image in zip(encoded_at, decode([batch.parts[i] for i in encoded_at]), strict=True):
            images[i] = image
    kept = _drop_undecodable(batch, images, samples)
    if not kept:
        return None
    if len({tuple(image.shape) for image in kept}) == 1:
        return torch.stack(kept)
    return preprocessing.to_common_size(kept)


def _part_on_device(part: Tensor, device: torch.device) -> Tensor | None:
    """(3, H, W) on the device for decoded (H, W, 3) pixels; None for an encoded JPEG (decoded later)."""
    return part.to(device, non_blocking=True).permute(2, 0, 1) if part.ndim == 3 else None


def _drop_undecodable(
    batch: ImageBatch, images: list[Tensor | None], samples: Sequence[ImageSample]
) -> list[Tensor]:
    kept, positions = [], []
    for position, image in zip(batch.positions, images, strict=True):
        if image is None:
            batch.skips.seen -= 1  # the worker counted it as fine; record_bad counts it again, as bad
            batch.skips.record_bad(samples[position].key, "corrupt_image")
        else:
            kept.append(image)
            positions.append(position)
    batch.positions = positions
    return kept


# --- the extractor base ------------------------------------------------------------------------------------


class ImageNetworkExtractor:
    """A pretrained image network behind the shared pipeline. Subclasses set the class attributes and
    implement :meth:`build_network` and :meth:`describe_preprocessing`.

    Construction is cheap and needs no weights (the API constructs extractors to validate a submission);
    the weights are found, verified and loaded on first use. :meth:`check_weights` does the finding and
    verifying alone, for a service that wants to fail a submission early.
    """

    name: str
    version: str = "1"
    modality: str = "image"
    accepts: ClassVar[frozenset[str]] = frozenset({"image"})
    cacheable: ClassVar[bool] = True
    fits_on_real: ClassVar[bool] = False
    weights: ClassVar[WeightsSpec]
    dim: ClassVar[int]

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = parse_extractor_options(ImageExtractorOptions, options, self.name)
        if self.options.decoder == "nvjpeg" and not self.preprocessing.decodes_on_gpu:
            raise ExtractorOptionError(
                f"extractor {self.name!r} resizes with Pillow in the loader workers, which GPU-decoded "
                "images never reach; use decoder='pillow'",
                details={"extractor": self.name, "decoder": "nvjpeg"},
            )
        self.device = torch.device(self.options.device)
        self.dtype = AUTOCAST_DTYPES[self.options.dtype]
        self._network: nn.Module | None = None

    # What subclasses provide.
    preprocessing: ClassVar[ImagePreprocessing]

    def build_network(self, state_dict: Mapping[str, Tensor]) -> nn.Module:
        raise NotImplementedError

    def describe_preprocessing(self) -> dict[str, Any]:
        raise NotImplementedError

    # The FeatureExtractor interface.
    def fit(self, real: LoadedDataset) -> None:
        pass

    def embed(self, dataset: LoadedDataset, progress: ProgressReporter) -> Tensor:
        """(n_kept, dim) float32 CPU features, rows in ``image_samples()`` order minus skipped samples."""
        resolved = require_resolved(dataset)
        require_modality(resolved, self.accepts, self.name)  # before any weights are read
        network = self.network()
        decode = nvjpeg_decoder(self.device) if self.options.decoder == "nvjpeg" else None
        samples = resolved.image_samples()
        features: list[Tensor] = []
        for batch in iter_image_batches(dataset, self.preprocessing, self.options, progress):
            images = batch_on_device(batch, self.preprocessing, self.device, decode, samples)
            if images is not None:
                features.append(self.forward(network, images))
        # Every sample skipped has already raised (TooFewSamplesError) when the batches ran out.
        return torch.cat(features)

    def describe(self) -> dict[str, Any]:
        # The pinned digest is the weights' identity: a file is only ever loaded after it matched it, so
        # describe() needs no file (the scoring workers that call it may hold no weights).
        return {
            "name": self.name,
            "version": self.version,
            "dim": self.dim,
            "weights_sha256": self.weights.sha256,
            "preprocessing": {
                **self.describe_preprocessing(),
                "decoder": self.options.decoder,
                "dtype": self.options.dtype,
            },
        }

    # The network.
    def check_weights(self) -> None:
        """Raise WeightsNotFoundError / WeightsChecksumError now rather than at the first batch."""
        resolve_weights(self.weights, get_settings().weights_dir)

    def network(self) -> nn.Module:
        """The network on the device, loaded from the verified weights file on first use."""
        if self._network is None:
            path = resolve_weights(self.weights, get_settings().weights_dir)
            network = self.build_network(load_state_dict(path)).to(self.device)
            if self.options.channels_last:
                # torch's type stubs lack Module.to's memory_format overload.
                network = network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            self._network = network
        return self._network

    @torch.inference_mode()
    def forward(self, network: nn.Module, images: Tensor) -> Tensor:
        """Features of a batch already on the device (uint8, or float [0, 1])."""
        batch = self.preprocessing.network_input(images)
        memory_format = torch.channels_last if self.options.channels_last else torch.contiguous_format
        batch = batch.contiguous(memory_format=memory_format)
        autocast = self.dtype != torch.float32
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            output = network(batch)
        return output.float().cpu()
