"""Helpers for the textseg-mini tests (synthetic cases, shipped-model checks)."""
from __future__ import annotations

import contextlib

import numpy as np

from TextSegLib.models.bundled.cases import Case

#: A tiny textseg-mini image configuration for fast tests.
TINY = {"stage_channels": (4, 8), "convs_per_stage": 1, "in_channels": 3, "proj_hidden": 16,
        "query_dim": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 16, "mask_hidden": 8,
        "patch_size": (16, 16, 16)}


def synthetic_case(name: str = "synthetic", shape=(40, 36, 24), seed: int = 0) -> Case:
    """A CT-like box: body at 40 HU, a 'liver' block on the patient's right (high i),
    a 'spleen' block on the left (low i)."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, -1000.0, np.float32)
    img[4:-4, 4:-4, :] = 40.0
    img += rng.normal(0, 5, shape).astype(np.float32)
    liver = np.zeros(shape, bool)
    liver[24:34, 10:24, 4:18] = True
    spleen = np.zeros(shape, bool)
    spleen[6:12, 12:20, 6:14] = True
    img[liver] = 120.0
    img[spleen] = 90.0
    body = img > -300
    m = np.diag([3.0, 3.0, 3.0, 1.0])
    return Case(name, name, "ct", img, m, {"liver": liver, "spleen": spleen, "body": body}, {"aorta"}, "test")


def shipped_model_available() -> bool:
    from TextSegLib.resources import resource_path

    p = resource_path("models", "textseg-mini", must_exist=False)
    return (p / "model.safetensors").is_file() and (p / "config.json").is_file()


@contextlib.contextmanager
def single_thread_bundled_engine():
    """The shipped textseg-mini engine with torch on 1 thread (the count is restored after)."""
    import torch

    from TextSegLib.models.bundled import load_bundled_engine

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_bundled_engine()
    finally:
        torch.set_num_threads(before)
