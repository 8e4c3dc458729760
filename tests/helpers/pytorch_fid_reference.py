"""pytorch-fid's own FID Inception network, built without importing torchvision.

pytorch-fid's ``FIDInceptionA``/``C``/``E_1``/``E_2`` subclass torchvision's Inception blocks and its
``fid_inception_v3`` builds torchvision's ``Inception3``. torchvision cannot be imported where its compiled
ops do not match torch, and the session-wide stand-in (``torchvision_standin.py``) only serves inert
placeholders. But torchvision's ``models/inception.py`` is pure Python: its only needs from the rest of
torchvision are registry and preset helpers used for pretrained-weight metadata. So both files are read
from their installed distributions and executed as fresh modules whose imports resolve through a small
table: the real ``inception`` module for pytorch-fid's ``torchvision``, and inert stubs for the helpers.
Nothing is added to ``sys.modules``, so the stand-in other tests see is untouched.

pytorch-fid's ``InceptionV3`` loads its weights with ``torch.hub.load_state_dict_from_url``, which reads
``<torch hub dir>/checkpoints/pt_inception-2015-12-05-6726825d.pth`` when that file exists: callers write
a generated state dict there (see :func:`write_fid_weights_file`) and point ``TORCH_HOME`` at it.
"""

from __future__ import annotations

import builtins
import enum
import functools
import importlib.metadata
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

FID_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
_SYNTHETIC_PACKAGE = "reference_torchvision"


def _installed_file(distribution: str, relative: str) -> Path:
    path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"{distribution} does not ship {relative} (looked at {path})")
    return path


class _WeightsEnum(enum.Enum):
    """Stands in for torchvision's ``WeightsEnum``: only ``verify(None)`` is ever called (no pretrained)."""

    @classmethod
    def verify(cls, obj: Any) -> Any:
        if obj is not None:
            raise RuntimeError("the reference Inception is built without pretrained torchvision weights")
        return None


def _identity_decorator_factory(*args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    return lambda fn: fn


def _torchvision_helper_stubs() -> dict[str, types.ModuleType]:
    """What ``torchvision/models/inception.py`` imports besides torch, as inert modules."""

    def module(name: str, **attributes: Any) -> types.ModuleType:
        stub = types.ModuleType(f"{_SYNTHETIC_PACKAGE}.{name}")
        stub.__dict__.update(attributes)
        return stub

    def overwrite_named_param(kwargs: dict[str, Any], param: str, new_value: Any) -> None:
        kwargs[param] = new_value

    return {
        "transforms._presets": module("transforms._presets", ImageClassification=object),
        "utils": module("utils", _log_api_usage_once=lambda obj: None),
        "models._api": module(
            "models._api",
            register_model=_identity_decorator_factory,
            Weights=functools.partial(dict),
            WeightsEnum=_WeightsEnum,
        ),
        "models._meta": module("models._meta", _IMAGENET_CATEGORIES=[]),
        "models._utils": module(
            "models._utils",
            _ovewrite_named_param=overwrite_named_param,
            handle_legacy_interface=_identity_decorator_factory,
        ),
    }


def _importer(table: Mapping[str, types.ModuleType], package: str) -> Callable[..., Any]:
    """An ``__import__`` resolving ``table``'s names (absolute, or relative to ``package``) and
    refusing any other ``torchvision`` import; everything else goes to the real importer."""

    def resolve(name: str, level: int) -> str:
        if level == 0:
            return name
        base = package.rsplit(".", level - 1)[0] if level > 1 else package
        return f"{base}.{name}" if name else base

    def import_(
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: tuple[str, ...] = (),
        level: int = 0,
    ) -> Any:
        absolute = resolve(name, level)
        if absolute in table:
            return table[absolute] if fromlist else table[absolute.split(".")[0]]
        if absolute == "torchvision" or absolute.startswith("torchvision."):
            raise ModuleNotFoundError(f"{absolute} is not part of the reference torchvision", name=absolute)
        return builtins.__import__(name, globals, locals, fromlist, level)

    return import_


def _execute(
    path: Path, module_name: str, package: str, table: Mapping[str, types.ModuleType]
) -> types.ModuleType:
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    module.__package__ = package
    module.__dict__["__builtins__"] = {**vars(builtins), "__import__": _importer(table, package)}
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    return module


def load_torchvision_inception() -> types.ModuleType:
    """torchvision's real ``models/inception.py`` (``Inception3``, ``InceptionA`` ... ``inception_v3``)."""
    path = _installed_file("torchvision", "torchvision/models/inception.py")
    stubs = {f"{_SYNTHETIC_PACKAGE}.{name}": stub for name, stub in _torchvision_helper_stubs().items()}
    return _execute(path, f"{_SYNTHETIC_PACKAGE}.models.inception", f"{_SYNTHETIC_PACKAGE}.models", stubs)


def load_pytorch_fid_inception() -> types.ModuleType:
    """pytorch-fid's ``inception.py`` (``InceptionV3``, ``fid_inception_v3``, ``FIDInception*``) over the
    real torchvision Inception blocks."""
    inception = load_torchvision_inception()
    models = types.ModuleType("torchvision.models")
    models.__dict__.update(inception=inception, inception_v3=inception.inception_v3)
    torchvision = types.ModuleType("torchvision")
    # pytorch-fid reads the version to pass ``init_weights=False`` (>= 0.6) and ``weights=`` (>= 0.13).
    torchvision.__dict__.update(__version__=importlib.metadata.version("torchvision"), models=models)
    path = _installed_file("pytorch-fid", "pytorch_fid/inception.py")
    table = {"torchvision": torchvision, "torchvision.models": models}
    return _execute(path, "reference_pytorch_fid.inception", "reference_pytorch_fid", table)


def official_state_dict_template() -> dict[str, torch.Tensor]:
    """A state dict with exactly the FID weights file's keys and shapes: those of
    ``fid_inception_v3()`` (torchvision's ``Inception3(num_classes=1008, aux_logits=False)``, whose FID
    patches change no parameter), zero-initialised."""
    inception = load_torchvision_inception()
    network = inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    return {key: torch.zeros_like(value) for key, value in network.state_dict().items()}


def random_fid_state_dict(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The official key set with seeded random values that keep activations of order one through the 94
    convolutions: He-scaled convolution weights and batch-norm statistics that are not the identity."""
    state = {}
    for key, template in official_state_dict_template().items():
        state[key] = _random_like(key, template, generator)
    return state


def _random_like(key: str, template: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    shape = template.shape
    if key.endswith("num_batches_tracked"):
        return torch.tensor(1000, dtype=template.dtype)
    if key.endswith("running_var") or key.endswith("bn.weight"):
        return 0.5 + torch.rand(shape, generator=generator)
    if key.endswith("running_mean") or key.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=generator)
    fan_in = template[0].numel()
    return torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5


def write_fid_weights_file(torch_home: Path, state_dict: Mapping[str, torch.Tensor]) -> Path:
    """Saves ``state_dict`` where torch.hub (with ``TORCH_HOME=torch_home``) looks for pytorch-fid's file."""
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    path = checkpoints / FID_WEIGHTS_FILENAME
    torch.save(dict(state_dict), path)
    return path
