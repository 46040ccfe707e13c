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


def sat_reference_dir() -> Path:
    """The SAT parity fixtures shipped in ``Testing/Data/sat-reference`` (or $TEXTSEG_SAT_REFERENCE)."""
    env = os.environ.get("TEXTSEG_SAT_REFERENCE")
    if env and (Path(env) / "forward-nano.npz").is_file():
        return Path(env)
    return DATA / "sat-reference"


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh TEXTSEG_HOME (model folders, consent, caches) and no TEXTSEG_MODEL."""
    h = tmp_path / "home"
    monkeypatch.setenv("TEXTSEG_HOME", str(h))
    monkeypatch.delenv("TEXTSEG_MODEL", raising=False)
    return h


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def sat_reference() -> Path:
    return sat_reference_dir()
