"""The installed torch is the registry build that torchvision works with.

A local CPU-only wheel torch 2.13.0 is visible to pip on these machines and breaks
torchvision (``operator torchvision::nms does not exist``); nothing may pin it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_torch_is_not_the_local_cpu_wheel():
    assert not torch.__version__.startswith("2.13.0"), torch.__version__


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision not installed")
def test_torchvision_operators_load():
    import torchvision

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    kept = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert kept.tolist() == [0]


def test_no_distribution_pins_torch_2_13():
    for pyproject in ROOT.glob("**/pyproject.toml"):
        if ".venv" in pyproject.parts or ".nox" in pyproject.parts:
            continue
        text = pyproject.read_text()
        assert not re.search(r"torch\s*==\s*2\.13", text), pyproject
