"""The sentence encoder: the packaged all-MiniLM-L6-v2 end to end, parity with sentence-transformers, errors.

sentence-transformers (and transformers under it) is a test-only reference; it imports torchvision, which the
session conftest replaces with an inert stand-in where the installed build cannot be imported.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import BertConfig as HfBertConfig
from transformers import BertModel

from auditor.errors import BadInputError
from auditor.extractors.text_encoder import (
    PACKAGED_MODEL_NAME,
    NoTextsError,
    SentenceEncoder,
    TextFormatError,
    TextModelError,
    default_model_dir,
)

# float32 end to end on both sides; observed differences are ~2e-7.
PARITY_ATOL = 1e-5
BATCH_INVARIANCE_ATOL = 1e-5
# sha256 of all-MiniLM-L6-v2's model.safetensors (the Hugging Face Hub LFS object id).
MINILM_WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

TOPICS = {
    "cooking": [
        "Simmer the tomato sauce for twenty minutes before adding fresh basil.",
        "Knead the bread dough until it is smooth and elastic.",
        "Roast the chicken in a hot oven with garlic and rosemary.",
        "Whisk the eggs and sugar together to make a light sponge cake.",
        "Season the soup with salt and pepper just before serving.",
    ],
    "football": [
        "The striker scored a late goal to win the championship match.",
        "The goalkeeper saved a penalty in the final minute of the game.",
        "Fans filled the stadium to watch the derby between the two rival clubs.",
        "The coach changed tactics at half time and the team came back to draw.",
        "The midfielder was shown a red card for a dangerous tackle.",
    ],
    "astronomy": [
        "The telescope captured images of a distant spiral galaxy.",
        "Astronomers detected a new exoplanet orbiting a red dwarf star.",
        "A total solar eclipse happens when the moon blocks the sun.",
        "The rover collected rock samples from the surface of Mars.",
        "Black holes bend light so strongly that nothing can escape them.",
    ],
    "finance": [
        "The central bank raised interest rates to fight inflation.",
        "Stock markets fell sharply after the disappointing earnings report.",
        "Investors moved their savings into government bonds.",
        "The company issued new shares to raise capital for expansion.",
        "Mortgage payments rose as lenders tightened their credit conditions.",
    ],
}
CORPUS = [sentence for sentences in TOPICS.values() for sentence in sentences]
LABELS = torch.tensor([topic for topic, sentences in enumerate(TOPICS.values()) for _ in sentences])
# Edge cases a tokenizer can trip on, and a text far longer than 256 tokens.
AWKWARD_TEXTS = ["", "   ", "Ünïcödé àccents, 中文字符 and emoji 🚀!", "UPPER case Text"]
LONG_TEXT = "The quick brown fox jumps over the lazy dog near the river bank. " * 200


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder.from_package()


@pytest.fixture(scope="module")
def corpus_embeddings(encoder: SentenceEncoder) -> torch.Tensor:
    return encoder.encode(CORPUS)


def _sentence_transformers_encode(model_dir: Path, texts: list[str]) -> torch.Tensor:
    reference = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    return torch.from_numpy(reference.encode(texts, normalize_embeddings=True, batch_size=8))


def _assert_close(ours: torch.Tensor, theirs: torch.Tensor, atol: float) -> None:
    worst = (ours - theirs).abs().max(dim=1).values
    row = int(worst.argmax())
    assert float(worst[row]) <= atol, (
        f"row {row} differs by {float(worst[row]):.3g} > {atol}: "
        f"ours {ours[row, :4].tolist()} vs reference {theirs[row, :4].tolist()}"
    )


# --- the packaged model ------------------------------------------------------------------------------------


def test_packaged_model_is_all_minilm_l6_v2(encoder: SentenceEncoder) -> None:
    model_dir = default_model_dir()
    assert (model_dir / "model.safetensors").is_file(), f"no weights under {model_dir}"
    assert encoder.describe() == {
        "model": PACKAGED_MODEL_NAME,
        "dim": 384,
        "max_seq_length": 256,
        "pooling": "mean",
        "normalize": True,
        "weights_sha256": MINILM_WEIGHTS_SHA256,
    }


def test_embeddings_are_float32_unit_vectors(corpus_embeddings: torch.Tensor) -> None:
    assert corpus_embeddings.shape == (len(CORPUS), 384)
    assert corpus_embeddings.dtype == torch.float32
    norms = corpus_embeddings.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), norms


def test_same_topic_sentences_are_closer_than_other_topics(corpus_embeddings: torch.Tensor) -> None:
    similarity = corpus_embeddings @ corpus_embeddings.T
    same_topic = LABELS[:, None] == LABELS[None, :]
    off_diagonal = ~torch.eye(len(CORPUS), dtype=torch.bool)
    for topic, name in enumerate(TOPICS):
        rows = LABELS.eq(topic)
        within = similarity[rows][(same_topic & off_diagonal)[rows]].mean()
        across = similarity[rows][(~same_topic)[rows]].mean()
        assert within > across + 0.1, f"{name}: within-topic {within:.3f} vs across-topic {across:.3f}"
    nearest = similarity.masked_fill(~off_diagonal, -2.0).argmax(dim=1)
    assert torch.equal(LABELS[nearest], LABELS), f"nearest neighbours' topics {LABELS[nearest].tolist()}"


def test_permuting_inputs_permutes_outputs(encoder: SentenceEncoder, torch_gen: torch.Generator) -> None:
    texts = CORPUS + AWKWARD_TEXTS
    permutation = torch.randperm(len(texts), generator=torch_gen)
    straight = encoder.encode(texts, batch_size=8)
    shuffled = encoder.encode([texts[i] for i in permutation], batch_size=8)
    _assert_close(shuffled, straight[permutation], BATCH_INVARIANCE_ATOL)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_batch_size_does_not_change_embeddings(
    encoder: SentenceEncoder, corpus_embeddings: torch.Tensor, batch_size: int
) -> None:
    few = 8  # batch size 1 runs one forward pass per text
    _assert_close(
        encoder.encode(CORPUS[:few], batch_size=batch_size), corpus_embeddings[:few], BATCH_INVARIANCE_ATOL
    )


def test_text_beyond_max_seq_length_is_truncated(encoder: SentenceEncoder) -> None:
    long_texts = [LONG_TEXT, LONG_TEXT + " Astronomers detected a new exoplanet orbiting a red dwarf star."]
    truncated = encoder.encode(long_texts)
    # The two differ only after token 256, so truncation makes them identical.
    _assert_close(truncated[1:], truncated[:1], 1e-6)


def test_on_batch_reports_texts_done_after_each_batch(encoder: SentenceEncoder) -> None:
    reported: list[int] = []
    encoder.encode(CORPUS[:10], batch_size=4, on_batch=reported.append)
    assert reported == [4, 8, 10]


def test_matches_sentence_transformers_encode(encoder: SentenceEncoder) -> None:
    texts = [*CORPUS, *AWKWARD_TEXTS, LONG_TEXT]
    _assert_close(
        encoder.encode(texts), _sentence_transformers_encode(default_model_dir(), texts), PARITY_ATOL
    )


# --- any BERT-style model directory ------------------------------------------------------------------------


def _write_tiny_model(model_dir: Path, pooling: str, weights_format: str) -> None:
    """A random 2-layer BERT with MiniLM's vocab.txt (no tokenizer.json) and a sentence-transformers layout."""
    config = HfBertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    network = BertModel(config, add_pooling_layer=False)
    network.save_pretrained(model_dir)
    if weights_format == "pytorch_model.bin":
        (model_dir / "model.safetensors").unlink()
        # Prefixed keys, as a BertForMaskedLM checkpoint stores its encoder.
        torch.save({f"bert.{k}": v for k, v in network.state_dict().items()}, model_dir / "pytorch_model.bin")
    shutil.copy(default_model_dir() / "vocab.txt", model_dir / "vocab.txt")
    (model_dir / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    (model_dir / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (model_dir / "modules.json").write_text(json.dumps(modules))
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, f"pooling_mode_{pooling}": True})
    )


@pytest.mark.parametrize(
    ("pooling", "weights_format", "expected_pooling"),
    [
        ("mean_tokens", "model.safetensors", "mean"),
        ("cls_token", "pytorch_model.bin", "cls"),
        ("max_tokens", "model.safetensors", "max"),
    ],
)
def test_any_bert_directory_matches_sentence_transformers(
    tmp_path: Path, pooling: str, weights_format: str, expected_pooling: str
) -> None:
    _write_tiny_model(tmp_path, pooling, weights_format)
    encoder = SentenceEncoder(tmp_path)
    texts = [*CORPUS[:6], *AWKWARD_TEXTS, LONG_TEXT]
    described = encoder.describe()
    assert (described["dim"], described["max_seq_length"], described["pooling"]) == (32, 16, expected_pooling)
    _assert_close(
        encoder.encode(texts, batch_size=4), _sentence_transformers_encode(tmp_path, texts), PARITY_ATOL
    )


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_model_dir_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(TextModelError, match=r"does not exist.*config\.json.*model\.safetensors") as caught:
        SentenceEncoder(tmp_path / "nowhere")
    assert caught.value.code == "text_model_invalid"
    assert isinstance(caught.value, BadInputError)


def test_directory_without_weights_or_tokenizer_says_what_is_missing(tmp_path: Path) -> None:
    shutil.copy(default_model_dir() / "config.json", tmp_path / "config.json")
    with pytest.raises(TextModelError) as caught:
        SentenceEncoder(tmp_path)
    assert caught.value.details["missing"] == [
        "tokenizer.json or vocab.txt",
        "model.safetensors or pytorch_model.bin",
    ]


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    _write_tiny_model(tmp_path, "mean_tokens", "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(TextModelError, match="does not match"):
        SentenceEncoder(tmp_path)


def test_unsupported_sentence_transformers_modules_are_refused(tmp_path: Path) -> None:
    _write_tiny_model(tmp_path, "mean_tokens", "model.safetensors")
    modules = json.loads((tmp_path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(TextModelError, match=r"\['Dense'\]"):
        SentenceEncoder(tmp_path)


def test_empty_text_list_is_refused(encoder: SentenceEncoder) -> None:
    with pytest.raises(NoTextsError) as caught:
        encoder.encode([])
    assert caught.value.code == "no_texts"


@pytest.mark.parametrize("texts", ["a single string", ["fine", 3]])
def test_non_text_input_is_refused(encoder: SentenceEncoder, texts: list[str]) -> None:
    with pytest.raises(TextFormatError):
        encoder.encode(texts)
