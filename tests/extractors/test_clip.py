"""``clip-vit-b32``: the plain-torch CLIP image tower against open_clip's layout and its ``VisionTransformer``,
dgm-eval's CLIP preprocessing written out with Pillow, and the extractor end to end on digit PNGs.

Weights are seeded random state dicts in open_clip's layout (there is no network to fetch the released
``open_clip_pytorch_model.bin``). The parity reference is open_clip's own ``VisionTransformer`` where
``open_clip_torch`` is installed (its model code imports with the tests' torchvision stand-in; its package
``__init__`` needs ``ftfy`` for the tokenizer, so only ``open_clip.transformer`` is loaded); a functional
reference written from open_clip's code (``nn.MultiheadAttention``'s own forward for attention) always runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.digit_images import digit_pixels, write_image_folder
from PIL import Image
from torch import Tensor

from auditor.extractors import EXTRACTORS, get_extractor
from auditor.extractors.base import FeatureExtractor
from auditor.extractors.clip import (
    ClipPreprocessing,
    ClipVitB32Extractor,
    WeightsNotPinnedError,
)
from auditor.extractors.images import ExtractorOptionError, ImageExtractorOptions, iter_image_batches
from auditor.extractors.networks.clip import (
    CLIP_MEAN,
    CLIP_STD,
    CLIP_VITB32,
    CLIP_VITB32_LAION2B_FILENAME,
    CLIP_VITB32_LAION2B_URL,
    CLIP_VITB32_QUICKGELU,
    ClipVisionArchitecture,
    ClipVisionTransformer,
    build_clip_visual,
)
from auditor.extractors.weights import (
    WeightsChecksumError,
    WeightsFormatError,
    WeightsSpec,
    file_sha256,
    load_state_dict,
)
from auditor.pipeline.progress import NullProgress
from auditor.pipeline.spec import DatasetRef
from auditor.pipeline.stages import load_reference

WEIGHTS_SEED = 11
N_IMAGES = 5
# |ours - reference| <= ATOL + RTOL * |reference| on features of order 1: the same arithmetic in another
# order (attention kernels, batch sizes).
PARITY_RTOL = 1e-5
PARITY_ATOL = 1e-5
# One block at the real width: enough for the code paths that do not depend on the depth.
SHALLOW_B32 = ClipVisionArchitecture(
    "ViT-B-32-depth1", width=768, layers=1, patch_size=32, image_size=224, embed_dim=512
)


# --- open_clip's layout, written out from open_clip/transformer.py (VisionTransformer) ---------------------


def open_clip_visual_layout(arch: ClipVisionArchitecture) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an open_clip ViT image tower's state dict (``model.visual.state_dict()``)."""
    width, hidden = arch.width, arch.width * arch.mlp_ratio
    layout: dict[str, tuple[int, ...]] = {
        "class_embedding": (width,),
        "positional_embedding": ((arch.image_size // arch.patch_size) ** 2 + 1, width),
        "proj": (width, arch.embed_dim),
        "conv1.weight": (width, 3, arch.patch_size, arch.patch_size),
        "ln_pre.weight": (width,),
        "ln_pre.bias": (width,),
        "ln_post.weight": (width,),
        "ln_post.bias": (width,),
    }
    for index in range(arch.layers):
        block = f"transformer.resblocks.{index}."
        layout |= {
            f"{block}ln_1.weight": (width,),
            f"{block}ln_1.bias": (width,),
            f"{block}attn.in_proj_weight": (3 * width, width),
            f"{block}attn.in_proj_bias": (3 * width,),
            f"{block}attn.out_proj.weight": (width, width),
            f"{block}attn.out_proj.bias": (width,),
            f"{block}ln_2.weight": (width,),
            f"{block}ln_2.bias": (width,),
            f"{block}mlp.c_fc.weight": (hidden, width),
            f"{block}mlp.c_fc.bias": (hidden,),
            f"{block}mlp.c_proj.weight": (width, hidden),
            f"{block}mlp.c_proj.bias": (width,),
        }
    return layout


# Some of ViT-B-32's text-tower keys (real names and shapes; the whole tower has 63M parameters): names
# such as ``positional_embedding`` and ``transformer.resblocks.0.*`` also exist in the image tower, without
# the ``visual.`` prefix, so loading them instead would fail the strict load.
TEXT_TOWER_SAMPLE: dict[str, tuple[int, ...]] = {
    "positional_embedding": (77, 512),
    "text_projection": (512, 512),
    "logit_scale": (),
    "ln_final.weight": (512,),
    "ln_final.bias": (512,),
    "transformer.resblocks.0.attn.in_proj_weight": (1536, 512),
    "transformer.resblocks.0.attn.in_proj_bias": (1536,),
    "transformer.resblocks.0.mlp.c_fc.weight": (2048, 512),
}


def random_visual_state(arch: ClipVisionArchitecture, seed: int) -> dict[str, Tensor]:
    """Seeded values of order 1 for every image-tower tensor (LayerNorm gains around 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in open_clip_visual_layout(arch).items():
        if key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith("bias"):
            state[key] = 0.1 * torch.randn(shape, generator=generator)
        elif key == "proj":
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(shape[0])
        elif key.endswith("weight"):
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        else:  # class_embedding, positional_embedding
            state[key] = torch.randn(shape, generator=generator) * arch.width**-0.5
    return state


def random_open_clip_state(arch: ClipVisionArchitecture, seed: int) -> dict[str, Tensor]:
    """A full open_clip checkpoint's shape: ``visual.*`` plus text-tower keys and ``logit_scale``."""
    generator = torch.Generator().manual_seed(seed + 1)
    text = {key: torch.randn(shape, generator=generator) for key, shape in TEXT_TOWER_SAMPLE.items()}
    visual = {f"visual.{key}": value for key, value in random_visual_state(arch, seed).items()}
    return {**text, **visual}


def random_images(seed: int, batch: int, size: int = 224) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def features(network: torch.nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        return network(images)


# --- references ------------------------------------------------------------------------------------------


def reference_clip_visual(
    state: dict[str, Tensor], arch: ClipVisionArchitecture, images: Tensor, project: bool
) -> Tensor:
    """open_clip's VisionTransformer.forward written out (token pooling, no LayerScale, no patch dropout),
    attention through torch's ``F.multi_head_attention_forward`` (what ``nn.MultiheadAttention`` runs)."""

    def layer_norm(x: Tensor, name: str) -> Tensor:
        return F.layer_norm(x, (arch.width,), state[f"{name}.weight"], state[f"{name}.bias"], 1e-5)

    def activation(x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x) if arch.quick_gelu else F.gelu(x)

    x = F.conv2d(images, state["conv1.weight"], stride=arch.patch_size)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = state["class_embedding"] + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = layer_norm(torch.cat([cls, x], dim=1) + state["positional_embedding"], "ln_pre")
    x = x.permute(1, 0, 2)  # LND, the layout F.multi_head_attention_forward takes
    for index in range(arch.layers):
        block = f"transformer.resblocks.{index}"
        h = layer_norm(x, f"{block}.ln_1")
        attended, _ = F.multi_head_attention_forward(
            h, h, h, arch.width, arch.heads,
            state[f"{block}.attn.in_proj_weight"], state[f"{block}.attn.in_proj_bias"],
            None, None, False, 0.0,
            state[f"{block}.attn.out_proj.weight"], state[f"{block}.attn.out_proj.bias"],
            need_weights=False,
        )  # fmt: skip
        x = x + attended
        h = layer_norm(x, f"{block}.ln_2")
        h = F.linear(h, state[f"{block}.mlp.c_fc.weight"], state[f"{block}.mlp.c_fc.bias"])
        x = x + F.linear(
            activation(h), state[f"{block}.mlp.c_proj.weight"], state[f"{block}.mlp.c_proj.bias"]
        )
    pooled = layer_norm(x.permute(1, 0, 2)[:, 0], "ln_post")
    return pooled @ state["proj"] if project else pooled


def import_open_clip_transformer() -> types.ModuleType:
    """``open_clip.transformer`` (the model code) without running open_clip's package ``__init__``, which
    imports the tokenizer and its ``ftfy`` dependency; the package entries are removed again afterwards."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("open_clip_torch is a test dependency: pip install -e '.[dev]'")
    if "open_clip" in sys.modules:
        return importlib.import_module("open_clip.transformer")
    package = types.ModuleType("open_clip")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["open_clip"] = package
    try:
        return importlib.import_module("open_clip.transformer")
    finally:
        for name in [m for m in sys.modules if m == "open_clip" or m.startswith("open_clip.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def open_clip_transformer() -> types.ModuleType:
    # A declared test dependency (open_clip_torch in the dev extra): no skip that would let CI pass without it.
    return import_open_clip_transformer()


def open_clip_vision_tower(
    module: types.ModuleType, arch: ClipVisionArchitecture, state: dict[str, Tensor]
) -> torch.nn.Module:
    """open_clip's VisionTransformer as ``_build_vision_tower`` makes it for a plain ViT config."""
    tower = module.VisionTransformer(
        image_size=arch.image_size,
        patch_size=arch.patch_size,
        width=arch.width,
        layers=arch.layers,
        heads=arch.width // 64,
        mlp_ratio=4.0,
        output_dim=arch.embed_dim,
        act_layer=module.QuickGELU if arch.quick_gelu else torch.nn.GELU,
        norm_layer=module.LayerNorm,
    )
    tower.load_state_dict(state, strict=True)
    return tower.eval()


# --- the network -------------------------------------------------------------------------------------------


def test_parameters_have_open_clips_visual_names_and_shapes() -> None:
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in ClipVisionTransformer(CLIP_VITB32).state_dict().items()}
    official = open_clip_visual_layout(CLIP_VITB32)
    assert sorted(set(official) - set(ours)) == [] and sorted(set(ours) - set(official)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}
    assert official["positional_embedding"] == (50, 768) and official["proj"] == (768, 512)
    assert (CLIP_VITB32.heads, CLIP_VITB32.grid, CLIP_VITB32.activation) == (12, 7, "gelu")
    assert CLIP_VITB32_QUICKGELU.activation == "quick_gelu"


def test_the_layout_is_open_clips_own(open_clip_transformer: types.ModuleType) -> None:
    with torch.device("meta"):
        theirs = open_clip_transformer.VisionTransformer(
            image_size=224, patch_size=32, width=768, layers=12, heads=12, mlp_ratio=4.0, output_dim=512
        )
    assert {k: tuple(v.shape) for k, v in theirs.state_dict().items()} == open_clip_visual_layout(CLIP_VITB32)


def test_a_full_open_clip_state_dict_loads_strictly_ignoring_the_text_tower() -> None:
    state = random_open_clip_state(CLIP_VITB32, WEIGHTS_SEED)
    network = build_clip_visual(CLIP_VITB32, state)
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    assert torch.equal(network.proj, state["visual.proj"])
    loaded = network.state_dict()
    key = "transformer.resblocks.11.attn.in_proj_weight"
    assert torch.equal(loaded[key], state[f"visual.{key}"])
    out = features(network, random_images(1, 2))
    assert out.shape == (2, 768) and out.dtype == torch.float32 and torch.isfinite(out).all()
    projected = features(build_clip_visual(CLIP_VITB32, state, project=True), random_images(1, 2))
    assert projected.shape == (2, 512)
    torch.testing.assert_close(projected, out @ state["visual.proj"], rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_an_image_tower_saved_alone_loads_too() -> None:
    visual = random_visual_state(SHALLOW_B32, WEIGHTS_SEED)
    prefixed = {f"visual.{k}": v for k, v in visual.items()}
    images = random_images(2, 1)
    alone = features(build_clip_visual(SHALLOW_B32, visual), images)
    assert torch.equal(alone, features(build_clip_visual(SHALLOW_B32, prefixed), images))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("visual.ln_post.bias"), "Missing key"),
        (lambda s: s.update({"visual.attn_pool.query": torch.zeros(1)}), "Unexpected key"),
        (lambda s: s.update({"visual.proj": torch.zeros(768, 1024)}), "size mismatch"),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_a_state_dict_that_does_not_fit_is_refused(change: object, message: str) -> None:
    state = random_open_clip_state(SHALLOW_B32, WEIGHTS_SEED)
    change(state)  # type: ignore[operator]
    with pytest.raises(WeightsFormatError, match=message):
        build_clip_visual(SHALLOW_B32, state)


def test_features_do_not_depend_on_the_batch() -> None:
    network = build_clip_visual(SHALLOW_B32, random_visual_state(SHALLOW_B32, WEIGHTS_SEED))
    images = random_images(3, 4)
    together = features(network, images)
    alone = torch.cat([features(network, images[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=PARITY_RTOL, atol=PARITY_ATOL)
    nhwc = features(network, images.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(nhwc, together, rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_other_image_sizes_are_refused() -> None:
    network = build_clip_visual(SHALLOW_B32, random_visual_state(SHALLOW_B32, WEIGHTS_SEED))
    with pytest.raises(ValueError, match=r"\(batch, 3, 224, 224\)"):
        features(network, random_images(0, 1, size=256))


@pytest.mark.parametrize("arch", [CLIP_VITB32, CLIP_VITB32_QUICKGELU], ids=lambda a: a.activation)
def test_parity_with_a_written_out_reference(arch: ClipVisionArchitecture) -> None:
    state = random_visual_state(arch, WEIGHTS_SEED)
    images = random_images(4, 3)
    for project in (False, True):
        ours = features(build_clip_visual(arch, state, project=project), images)
        with torch.no_grad():
            reference = reference_clip_visual(state, arch, images, project)
        torch.testing.assert_close(ours, reference, rtol=PARITY_RTOL, atol=PARITY_ATOL)


@pytest.mark.parametrize("arch", [CLIP_VITB32, CLIP_VITB32_QUICKGELU], ids=lambda a: a.activation)
def test_parity_with_open_clips_vision_transformer(
    open_clip_transformer: types.ModuleType, arch: ClipVisionArchitecture
) -> None:
    state = random_visual_state(arch, WEIGHTS_SEED)
    tower = open_clip_vision_tower(open_clip_transformer, arch, state)
    images = random_images(5, 3)
    projected = features(tower, images)  # encode_image before normalisation
    tower.proj = None  # type: ignore[assignment]  # open_clip then returns the pooled token after ln_post: dgm-eval's feature
    pooled = features(tower, images)
    ours = features(build_clip_visual(arch, state), images)
    torch.testing.assert_close(ours, pooled, rtol=PARITY_RTOL, atol=PARITY_ATOL)
    ours_projected = features(build_clip_visual(arch, state, project=True), images)
    torch.testing.assert_close(ours_projected, projected, rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_the_activation_matters() -> None:
    """GELU and QuickGELU towers with the same weights differ: the architecture record is not decoration."""
    gelu, quick = (random_visual_state(a, WEIGHTS_SEED) for a in (SHALLOW_B32, SHALLOW_B32))
    quick_arch = ClipVisionArchitecture(
        "ViT-B-32-depth1-quickgelu", width=768, layers=1, patch_size=32, image_size=224, embed_dim=512,
        quick_gelu=True,
    )  # fmt: skip
    images = random_images(6, 1)
    difference = features(build_clip_visual(SHALLOW_B32, gelu), images) - features(
        build_clip_visual(quick_arch, quick), images
    )
    assert difference.abs().max() > 1e-3


# --- preprocessing -----------------------------------------------------------------------------------------


def dgm_eval_clip_pixels(image: Image.Image, size: int = 224) -> np.ndarray:
    """dgm-eval's CLIPEncoder.transform up to the normalisation, with Pillow: torchvision's
    ``TF.resize(image, size, BICUBIC)`` (shorter side to ``size``, the other ``int(size * long / short)``;
    an image already that size is returned as it is) and ``TF.center_crop(size)``."""
    width, height = image.size
    short, long = sorted((width, height))
    new_long = int(size * long / short)
    target = (size, new_long) if width <= height else (new_long, size)
    resized = image if target == (width, height) else image.resize(target, Image.Resampling.BICUBIC)
    left = round((resized.width - size) / 2.0)
    top = round((resized.height - size) / 2.0)
    return np.array(resized.crop((left, top, left + size, top + size)))


def gradient_image(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (224, 224),
        (32, 32),
        (300, 200),
        (200, 301),
        (225, 224),
        (224, 227),
        (500, 224),
        (640, 481),
        (97, 1000),
    ],
)
def test_worker_preprocessing_is_dgm_evals_resize_and_center_crop(width: int, height: int) -> None:
    pixels = gradient_image(width, height, seed=width * 1000 + height)
    ours = ClipPreprocessing().in_worker(pixels)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8 and ours.flags["C_CONTIGUOUS"]
    assert np.array_equal(ours, dgm_eval_clip_pixels(Image.fromarray(pixels)))


def test_center_crop_rounds_half_to_even_as_torchvision() -> None:
    # A 225-wide image has one extra column: round(0.5) == 0 keeps the left edge; a 227-wide one has three:
    # round(1.5) == 2.
    pixels = np.arange(227, dtype=np.uint8)[None, :, None].repeat(224, axis=0).repeat(3, axis=2)
    assert ClipPreprocessing().in_worker(pixels[:, :225])[0, 0, 0] == 0
    assert ClipPreprocessing().in_worker(pixels)[0, 0, 0] == 2


def test_network_input_is_to_tensor_then_clip_normalize() -> None:
    batch = torch.from_numpy(gradient_image(224, 224, seed=0)).permute(2, 0, 1)[None]
    expected = (batch.float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(ClipPreprocessing().network_input(batch), expected, rtol=0, atol=1e-6)


# --- the extractor -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full open_clip-style ``open_clip_pytorch_model.bin`` for ViT-B-32 (seeded, 350 MB)."""
    path = tmp_path_factory.mktemp("clip_weights") / CLIP_VITB32_LAION2B_FILENAME
    torch.save(random_open_clip_state(CLIP_VITB32, WEIGHTS_SEED), path)
    return path


@pytest.fixture
def pinned(weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    spec = WeightsSpec(
        name="CLIP ViT-B/32 laion2b_s34b_b79k (test)",
        filename=CLIP_VITB32_LAION2B_FILENAME,
        sha256=file_sha256(weights_file),
        source_url=CLIP_VITB32_LAION2B_URL,
    )
    monkeypatch.setattr(ClipVitB32Extractor, "pinned_weights", spec)
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(weights_file.parent))
    yield weights_file


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clip_digits") / "png"
    write_image_folder(root, [*digit_pixels(0, 3, side=32), *digit_pixels(3, N_IMAGES - 3, side=48)])
    return root


def load_digits(folder: Path) -> object:
    return load_reference("real", DatasetRef(uri=str(folder), options={}))


def test_the_extractor_embeds_digit_pngs_as_the_network_on_dgm_evals_input(
    pinned: Path, digits: Path
) -> None:
    dataset = load_digits(digits)
    ours = ClipVitB32Extractor({"batch_size": 2, "num_workers": 2}).embed(dataset, NullProgress())  # type: ignore[arg-type]
    assert ours.shape == (N_IMAGES, 768) and ours.dtype == torch.float32
    inputs = []
    for path in sorted(digits.iterdir()):
        with Image.open(path) as image:
            pixels = dgm_eval_clip_pixels(image.convert("RGB"))
        unit = torch.from_numpy(pixels).permute(2, 0, 1).float().div(255)
        inputs.append((unit - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1))
    network = build_clip_visual(CLIP_VITB32, load_state_dict(pinned))
    direct = features(network, torch.stack(inputs))
    torch.testing.assert_close(ours, direct, rtol=1e-4, atol=1e-4)
    one_batch = ClipVitB32Extractor({"batch_size": N_IMAGES, "num_workers": 0}).embed(dataset, NullProgress())  # type: ignore[arg-type]
    torch.testing.assert_close(one_batch, ours, rtol=1e-4, atol=1e-4)


def test_safetensors_checkpoints_load_the_same(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = random_open_clip_state(SHALLOW_B32, WEIGHTS_SEED)
    save_file(state, str(tmp_path / "open_clip_model.safetensors"))
    torch.save(state, tmp_path / "open_clip_pytorch_model.bin")
    images = random_images(7, 2)
    from_bin = features(
        build_clip_visual(SHALLOW_B32, load_state_dict(tmp_path / "open_clip_pytorch_model.bin")), images
    )
    from_safetensors = features(
        build_clip_visual(SHALLOW_B32, load_state_dict(tmp_path / "open_clip_model.safetensors")), images
    )
    assert torch.equal(from_bin, from_safetensors)


def test_loader_batches_are_224_crops(digits: Path) -> None:
    dataset = load_digits(digits)
    batches = list(iter_image_batches(dataset, ClipPreprocessing(), ImageExtractorOptions(), NullProgress()))  # type: ignore[arg-type]
    assert [tuple(b.images.shape) for b in batches if b.images is not None] == [(N_IMAGES, 3, 224, 224)]


def test_unpinned_weights_are_refused_before_any_file_is_read(
    weights_file: Path, monkeypatch: pytest.MonkeyPatch, digits: Path
) -> None:
    monkeypatch.setattr(ClipVitB32Extractor, "pinned_weights", None)
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(weights_file.parent))
    extractor = ClipVitB32Extractor({})
    assert extractor.describe()["weights_sha256"] is None
    with pytest.raises(WeightsNotPinnedError, match="CLIP_VITB32_LAION2B_SHA256"):
        extractor.check_weights()
    with pytest.raises(WeightsNotPinnedError):
        extractor.embed(load_digits(digits), NullProgress())  # type: ignore[arg-type]


def test_registered_with_dgm_evals_identity() -> None:
    extractor = EXTRACTORS["clip-vit-b32"]({})
    assert isinstance(extractor, FeatureExtractor)
    assert (extractor.name, extractor.modality) == ("clip-vit-b32", "image")
    described = get_extractor("clip-vit-b32", {"device": "cpu"}).describe()
    assert described["dim"] == 768
    assert described["preprocessing"] == {
        "decode": "pillow-rgb",
        "resize": "pillow-bicubic-shorter-side-224",
        "crop": "center-224x224",
        "normalize": "openai-clip",
        "activation": "gelu",
        "feature": "cls-token-after-ln_post-before-proj",
        "decoder": "pillow",
        "dtype": "float32",
    }


def test_an_operator_pinned_digest_loads_the_file_it_names_and_nothing_else(
    weights_file: Path, monkeypatch: pytest.MonkeyPatch, digits: Path
) -> None:
    monkeypatch.setattr(ClipVitB32Extractor, "pinned_weights", None)
    monkeypatch.setenv("AUDITOR_WEIGHTS_DIR", str(weights_file.parent))
    digest = file_sha256(weights_file)
    extractor = ClipVitB32Extractor({"weights_sha256": digest, "num_workers": 0})
    assert extractor.describe()["weights_sha256"] == digest
    features = extractor.embed(load_digits(digits), NullProgress())  # type: ignore[arg-type]
    assert features.shape == (N_IMAGES, 768)
    wrong = ClipVitB32Extractor({"weights_sha256": "0" * 64, "num_workers": 0})
    with pytest.raises(WeightsChecksumError):
        wrong.check_weights()
    with pytest.raises(ExtractorOptionError, match="64 lowercase hex"):
        ClipVitB32Extractor({"weights_sha256": "not-a-digest"})
