"""Sliding window memory: a tile's features are released before the next tile's backbone runs."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import torch

from TextSegLib.engine.sliding_window import run_sliding_window


class Features:
    """Stand-in for SATFeatures that can be watched with a weak reference."""

    def __init__(self, image: torch.Tensor) -> None:
        self.image = image


class Watched(torch.nn.Module):
    """encode_image/decode model that records whether the previous tile's features are still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: weakref.ref | None = None
        self.alive_at_encode: list[bool] = []

    def encode_image(self, image: torch.Tensor) -> Features:
        gc.collect()
        self.alive_at_encode.append(self.previous is not None and self.previous() is not None)
        f = Features(image)
        self.previous = weakref.ref(f)
        return f

    def decode(self, f: Features, queries: torch.Tensor) -> torch.Tensor:
        return f.image[:, :1].expand(1, queries.shape[1], *f.image.shape[2:]).clone()


def test_previous_tile_features_are_released_before_the_next_tile():
    img = np.random.default_rng(0).standard_normal((32, 8, 8)).astype(np.float32)
    model = Watched()
    prob, info = run_sliding_window(img, model, torch.ones(2, 4), patch=(8, 8, 8), in_channels=1)
    assert info["tiles_run"] == info["tiles_total"] == 7
    assert len(model.alive_at_encode) == 7 and not any(model.alive_at_encode)
    assert np.allclose(prob[0], 1 / (1 + np.exp(-img)), atol=1e-5)
