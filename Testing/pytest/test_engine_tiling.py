"""Sliding window: reference tiling/Gaussian facts (tiling.json) and blending."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from _engine_helpers import SAT_REF
from TextSegLib.engine.base import CancelToken
from TextSegLib.engine.sliding_window import axis_starts, gaussian_importance, run_sliding_window, tile_boxes
from TextSegLib.errors import CancelledError, GeometryError, ModelError

TILING = SAT_REF / "tiling.json"


def test_tile_starts_match_reference_exactly():
    t = json.loads(TILING.read_text())
    crop = t["crop_size"]
    for case in t["cases"]:
        shape = case["input_shape"]
        starts = [axis_starts(s, c) for s, c in zip(shape, crop)]
        assert starts == case["starts_per_axis"], shape
        boxes = tile_boxes(shape, crop)
        assert len(boxes) == case["n_tiles"]
        for (s, e), ref in zip(boxes, case["tiles_in_order"]):
            assert list(s) == ref["start"] and list(e) == ref["end"]
            assert [c - (b - a) for a, b, c in zip(s, e, crop)] == ref["pad_after"]


def test_gaussian_is_bit_identical():
    g = json.loads(TILING.read_text())["gaussian"]
    m = gaussian_importance((288, 288, 96))
    assert m.dtype == np.float16 and list(m.shape) == g["shape"]
    assert hashlib.sha256(np.ascontiguousarray(m).tobytes()).hexdigest() == g["sha256_float16_C_order_bytes"]
    assert float(m.min()) == g["min"] and float(m[144, 144, 48]) == g["value_at_center"]


class Pointwise(torch.nn.Module):
    """logits[n] = a_n * image + b_n: blending must give back sigmoid exactly."""

    def forward(self, image, queries):
        q = queries[0]
        return image[:, :1] * q[:, 0].view(1, -1, 1, 1, 1) + q[:, 1].view(1, -1, 1, 1, 1)


def test_blending_of_a_pointwise_model_is_exact_including_short_tiles():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((20, 11, 7)).astype(np.float32)  # short on Y and Z, overlapping on X
    q = torch.tensor([[1.0, 0.0], [-2.0, 0.5]])
    calls = []
    prob, info = run_sliding_window(img, Pointwise(), q, patch=(8, 16, 8), in_channels=1,
                                    progress=lambda *a: calls.append(a))
    expect = 1 / (1 + np.exp(-(img[None] * q[:, 0, None, None, None].numpy() + q[:, 1, None, None, None].numpy())))
    assert np.allclose(prob, expect, atol=1e-5)
    assert info["tiles_run"] == info["tiles_total"] == 4
    assert calls[0] == ("tiles", 0, 4) and calls[-1] == ("tiles", 4, 4)


def test_batched_queries_equal_single_query_runs():
    from _engine_helpers import tiny_sat

    torch.manual_seed(0)
    model = tiny_sat(patch=(16, 16, 16))
    img = np.random.default_rng(1).standard_normal((24, 16, 16)).astype(np.float32)
    q = torch.randn(3, 16)
    allq, _ = run_sliding_window(img, model, q, patch=(16, 16, 16))
    for i in range(3):
        one, _ = run_sliding_window(img, model, q[i:i + 1], patch=(16, 16, 16))
        assert np.allclose(one[0], allq[i], atol=1e-5)


def test_empty_tiles_are_skipped_and_roi_and_cancel():
    img = np.zeros((32, 8, 8), np.float32)
    body = np.zeros(img.shape, bool)
    body[:8] = True
    q = torch.tensor([[1.0, 3.0]])
    prob, info = run_sliding_window(img, Pointwise(), q, patch=(8, 8, 8), in_channels=1, body=body)
    assert info["tiles_total"] == 7 and info["tiles_run"] == 2 and info["tiles_skipped"] == 5
    assert prob[0, :8].min() > 0.9 and prob[0, 12:].max() == 0
    prob, info = run_sliding_window(img, Pointwise(), q, patch=(8, 8, 8), in_channels=1,
                                    box=((20, 0, 0), (24, 8, 8)))
    assert info["tiles_total"] == 1
    assert prob[0, 20:24].min() > 0.9 and prob[0, :20].max() == 0 and prob[0, 24:].max() == 0
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(CancelledError):
        run_sliding_window(img, Pointwise(), q, patch=(8, 8, 8), in_channels=1, cancel=tok)
    with pytest.raises(GeometryError):
        run_sliding_window(img, Pointwise(), q, patch=(8, 8, 8), in_channels=1, box=((0, 0, 0), (40, 8, 8)))
    with pytest.raises(ModelError, match="logits"):
        run_sliding_window(img, lambda x, qq: x, torch.ones(2, 2), patch=(8, 8, 8), in_channels=1)
