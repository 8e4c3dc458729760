"""Inert torchvision stand-ins, so that ``pytorch_fid`` imports beside a CPU-only torch build.

The installed torchvision fails to import next to CPU torch 2.13 (``operator torchvision::nms does not
exist``), and ``pytorch_fid.fid_score`` / ``pytorch_fid.inception`` import it at module level. The
benchmarks only call ``pytorch_fid.fid_score.calculate_frechet_distance`` (numpy + scipy), so the names
below exist only to let those modules import: building the Inception network or an image transform
through them raises.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from typing import Any, NoReturn

import torch

STANDIN_VERSION = "0.0.0+bench-standin"


def _unavailable(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise RuntimeError("torchvision is replaced by an inert stand-in in the benchmarks")


class _UnavailableModule(torch.nn.Module):
    """Base for the Inception blocks ``pytorch_fid.inception`` subclasses at import time."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        _unavailable()


def _module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name, "bench stand-in (inert)")
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    module.__path__ = []  # a package: unknown submodules fail with ModuleNotFoundError (an ImportError)
    module.__dict__["__standin__"] = True
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _block(name: str) -> type:
    return type(name, (_UnavailableModule,), {"__module__": "torchvision.models.inception"})


def install_torchvision_standins() -> None:
    """Register the stand-ins in ``sys.modules`` (no-op when a torchvision is already imported)."""
    if "torchvision" in sys.modules:
        return
    functional = _module("torchvision.transforms.functional")
    transforms = _module(
        "torchvision.transforms",
        functional=functional,
        Compose=_unavailable,
        ToTensor=_unavailable,
        Normalize=_unavailable,
        Resize=_unavailable,
    )
    inception = _module(
        "torchvision.models.inception",
        Inception3=_block("Inception3"),
        InceptionA=_block("InceptionA"),
        InceptionB=_block("InceptionB"),
        InceptionC=_block("InceptionC"),
        InceptionD=_block("InceptionD"),
        InceptionE=_block("InceptionE"),
        InceptionAux=_block("InceptionAux"),
        inception_v3=_unavailable,
    )
    models = _module("torchvision.models", inception=inception, inception_v3=_unavailable)
    root = _module("torchvision", __version__=STANDIN_VERSION, transforms=transforms, models=models)
    for module in (root, transforms, functional, models, inception):
        sys.modules[module.__name__] = module
