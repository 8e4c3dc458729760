"""The plain-torch FID Inception against pytorch-fid 0.3.0's own network, on shared random weights.

The reference is pytorch-fid's ``InceptionV3(output_blocks=[3], resize_input=True, normalize_input=True)``
built from its installed source over torchvision's real Inception blocks (tests/helpers/
pytorch_fid_reference.py). It loads its weights the way it always does, through torch.hub's checkpoint
cache, from a file with the official key set and seeded random values; ours loads the same file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.pytorch_fid_reference import (
    FID_WEIGHTS_FILENAME,
    load_pytorch_fid_inception,
    official_state_dict_template,
    random_fid_state_dict,
    write_fid_weights_file,
)
from torch import Tensor, nn

from auditor.extractors.networks.inception import (
    FID_INCEPTION_FEATURE_DIM,
    FID_INCEPTION_WEIGHTS,
    FIDInceptionV3,
    build_fid_inception,
)
from auditor.extractors.weights import WeightsFormatError, load_state_dict

# Elementwise |ours - reference| <= ATOL + RTOL * |reference|, on features of order 1-50. The two networks
# run the same torch operators in the same order, so on CPU they agree bit for bit; the slack is for
# kernels that pick a different algorithm for a different input size.
PARITY_RTOL = 1e-5
PARITY_ATOL = 1e-5
WEIGHTS_SEED = 20_241_123


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = random_fid_state_dict(torch.Generator().manual_seed(WEIGHTS_SEED))
    return write_fid_weights_file(tmp_path_factory.mktemp("torch_home"), state)


@pytest.fixture(scope="module")
def pytorch_fid_network(weights_file: Path) -> nn.Module:
    torch_home = weights_file.parents[2]
    with pytest.MonkeyPatch.context() as patch:
        # torch.hub finds the file here instead of downloading it (TORCH_HOME is torch's documented knob).
        patch.setenv("TORCH_HOME", str(torch_home))
        assert Path(torch.hub.get_dir()) == torch_home / "hub", "torch.hub.set_dir was called elsewhere"
        return load_pytorch_fid_inception().InceptionV3([3], resize_input=True, normalize_input=True).eval()


@pytest.fixture(scope="module")
def network(weights_file: Path) -> FIDInceptionV3:
    return build_fid_inception(load_state_dict(weights_file))


def pytorch_fid_pool3(reference: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        (pool3,) = reference(images)
    return pool3.squeeze(-1).squeeze(-1)


def features(network: FIDInceptionV3, images: Tensor) -> Tensor:
    with torch.no_grad():
        return network(images)


def random_images(seed: int, batch: int, height: int, width: int) -> Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("height", "width"), [(299, 299), (64, 64), (97, 150)])
def test_matches_pytorch_fid_inception_v3(
    pytorch_fid_network: nn.Module, network: FIDInceptionV3, height: int, width: int
) -> None:
    images = random_images(height * 1000 + width, 2, height, width)
    expected = pytorch_fid_pool3(pytorch_fid_network, images)
    actual = features(network, images)
    assert expected.abs().mean() > 0.1, "degenerate reference features would make the comparison vacuous"
    torch.testing.assert_close(actual, expected, rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_batch_size_does_not_change_features(network: FIDInceptionV3) -> None:
    images = random_images(7, 4, 80, 80)
    together = features(network, images)
    apart = torch.cat([features(network, images[:1]), features(network, images[1:])])
    torch.testing.assert_close(apart, together, rtol=PARITY_RTOL, atol=PARITY_ATOL)


def test_output_is_one_2048_vector_per_image(network: FIDInceptionV3) -> None:
    out = features(network, random_images(3, 3, 32, 48))
    assert out.shape == (3, FID_INCEPTION_FEATURE_DIM)
    assert torch.isfinite(out).all()


def test_parameters_are_exactly_the_official_keys_less_the_classifier() -> None:
    official = official_state_dict_template()
    ours = FIDInceptionV3().state_dict()
    assert set(official) - set(ours) == {"fc.weight", "fc.bias"}
    assert set(ours) <= set(official)
    mismatched = {
        k: (tuple(v.shape), tuple(official[k].shape)) for k, v in ours.items() if v.shape != official[k].shape
    }
    assert not mismatched


def test_official_key_set_loads_from_disk_without_fc_too(tmp_path: Path) -> None:
    state = random_fid_state_dict(torch.Generator().manual_seed(1))
    del state["fc.weight"], state["fc.bias"]
    path = tmp_path / FID_WEIGHTS_FILENAME
    torch.save(state, path)
    built = build_fid_inception(load_state_dict(path))
    torch.testing.assert_close(
        built.Mixed_7c.branch_pool.bn.running_var, state["Mixed_7c.branch_pool.bn.running_var"]
    )
    assert not built.training


def test_a_file_saved_before_batch_norm_counted_batches_loads(tmp_path: Path) -> None:
    # Checkpoints from torch < 0.4.1 have no ``num_batches_tracked``; BatchNorm accepts them when the file
    # carries no version metadata, as pytorch-fid's own (strict) load does.
    state = {
        k: v
        for k, v in random_fid_state_dict(torch.Generator().manual_seed(3)).items()
        if "num_batches" not in k
    }
    path = tmp_path / FID_WEIGHTS_FILENAME
    torch.save(state, path)
    built = build_fid_inception(load_state_dict(path))
    torch.testing.assert_close(built.Conv2d_1a_3x3.bn.running_mean, state["Conv2d_1a_3x3.bn.running_mean"])


@pytest.mark.parametrize("change", ["missing", "unexpected", "wrong_shape"])
def test_loading_is_strict(change: str) -> None:
    state = random_fid_state_dict(torch.Generator().manual_seed(2))
    if change == "missing":
        del state["Mixed_6b.branch7x7dbl_3.conv.weight"]
    elif change == "unexpected":
        state["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    else:
        state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(WeightsFormatError, match="do not fit the FID Inception-v3"):
        build_fid_inception(state)


def test_rejects_images_that_are_not_rgb_batches(network: FIDInceptionV3) -> None:
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\)"):
        network(torch.rand(2, 1, 64, 64))


def test_weights_spec_names_pytorch_fids_file() -> None:
    assert FID_INCEPTION_WEIGHTS.filename == FID_WEIGHTS_FILENAME
    assert FID_INCEPTION_WEIGHTS.source_url.endswith("/" + FID_WEIGHTS_FILENAME)
    # torch.hub convention: the 8 hex digits in the file name start the file's SHA-256.
    assert FID_INCEPTION_WEIGHTS.is_full_hash
    assert FID_INCEPTION_WEIGHTS.sha256.startswith(FID_WEIGHTS_FILENAME.rsplit("-", 1)[1].split(".")[0])
