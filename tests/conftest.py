"""Shared test setup: never reach the network for Hugging Face models or datasets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The suite runs hundreds of fits of a few epochs each; the default recipe's floor of 500
# optimiser steps per cycle would multiply its time. Tests of the floor set min_steps
# themselves (tests/core/test_recipe.py), and the real-data comparisons use the default.
os.environ.setdefault("ALSCOPE_MIN_STEPS", "0")
