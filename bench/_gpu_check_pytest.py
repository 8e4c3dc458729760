"""pytest plugin for bench/gpu_check.sh when tests/conftest.py cannot be imported (a minimal install
without the service stack it imports: redis, uvicorn, SQLAlchemy): run with ``--noconftest -p
_gpu_check_pytest`` and ``PYTHONPATH=bench:tests``. It does the one thing of that conftest the CUDA
tests need: serve the torchvision stand-in where the installed torchvision cannot be imported, before
pytorch-fid is imported by a test module."""

from __future__ import annotations

from helpers.torchvision_standin import install_torchvision_standin

install_torchvision_standin()
