"""An inert ``torchvision`` for importing the reference metric implementations.

pytorch-fid, clean-fid and torch-fidelity import torchvision at module level (for their image
pipelines and Inception wrappers), but the tests only call their feature-level functions
(``calculate_frechet_distance``, ``kid_features_to_metric``, ``mmd2``, ``kernel_distance``), which never
touch it. Where the installed torchvision cannot be imported (e.g. a build that does not match the
installed torch: ``RuntimeError: operator torchvision::nms does not exist``), a stand-in package is
served instead: every ``torchvision.*`` module imports, and every attribute is a placeholder class that
can be subclassed and whose attributes are placeholders too (the references subclass ``torchvision.models.inception.InceptionA`` and friends at
import time) but raises as soon as anything calls it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, NoReturn

STANDIN_VERSION = "0.0.0+standin"
_ROOT = "torchvision"


def _placeholder(owner: str, name: str) -> type[_Unavailable]:
    return _PlaceholderMeta(name, (_Unavailable,), {"_qualified": f"{owner}.{name}"})


class _PlaceholderMeta(type):
    """Attributes of a placeholder are placeholders too (``torchvision.models.inception.InceptionA``)."""

    _qualified: str

    def __getattr__(cls, name: str) -> type[_Unavailable]:
        if name.startswith("__"):
            raise AttributeError(name)
        nested = _placeholder(cls._qualified, name)
        setattr(cls, name, nested)
        return nested


class _Unavailable(metaclass=_PlaceholderMeta):
    """Base of every stand-in attribute: subclassable, but never usable."""

    _qualified = _ROOT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _refuse(type(self)._qualified)


def _refuse(name: str) -> NoReturn:
    raise RuntimeError(f"{name} comes from the test stand-in for torchvision and cannot be used")


class StandinModule(types.ModuleType):
    """A module whose every public attribute is a placeholder class (cached, so identity is stable)."""

    def __getattr__(self, name: str) -> type[_Unavailable]:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = _placeholder(self.__name__, name)
        setattr(self, name, placeholder)
        return placeholder


class _StandinFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a :class:`StandinModule` for ``torchvision`` and any of its submodules."""

    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _ROOT and not fullname.startswith(_ROOT + "."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = StandinModule(spec.name)
        module.__path__ = []  # a package, so that submodule imports reach this finder
        if spec.name == _ROOT:
            module.__version__ = STANDIN_VERSION  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == _ROOT or m.startswith(_ROOT + ".")]:
        del sys.modules[name]


def is_standin(module: types.ModuleType) -> bool:
    return isinstance(module, StandinModule)


def install_torchvision_standin() -> bool:
    """Make ``import torchvision`` succeed; returns True when the stand-in is in use.

    The real torchvision is kept when it imports; a failed import leaves half-initialised
    ``torchvision.*`` entries behind, which are dropped before the stand-in takes over.
    """
    loaded = sys.modules.get(_ROOT)
    if loaded is not None:
        return is_standin(loaded)
    try:
        importlib.import_module(_ROOT)
    except Exception:
        _forget_torchvision()
    else:
        return False
    if not any(isinstance(finder, _StandinFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StandinFinder())
    importlib.import_module(_ROOT)
    return True
