"""Shared pytest setup: offline hubs, offscreen Qt, fixture paths."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Testing" / "Data"


def sat_reference_dir() -> Path | None:
    """``../shared/sat-reference`` beside the checkout (or $TEXTSEG_SAT_REFERENCE)."""
    env = os.environ.get("TEXTSEG_SAT_REFERENCE")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared" / "sat-reference"]:
        if (c / "README.md").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def sat_reference() -> Path:
    ref = sat_reference_dir()
    if ref is None:
        pytest.skip("SAT reference fixtures (../shared/sat-reference) are not present beside this checkout")
    return ref
