"""SAT model behaviour on small configurations (fast)."""
from __future__ import annotations

import pytest
import torch

from _sat_helpers import _one_torch_thread  # noqa: F401

from TextSegLib.errors import ModelError
from TextSegLib.models.sat import PRESETS, SATConfig, build_sat, make_config
from TextSegLib.models.sat.decoder import position_table

SMALL = dict(stage_channels=(8, 16, 16, 32), convs_per_stage=1, proj_hidden=32, query_dim=32, num_heads=4,
             num_layers=2, ffn_dim=64, mask_hidden=16, patch_size=(32, 32, 16))


def _small(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_sat("nano", **dict(SMALL, **kw)).eval()


def test_presets_and_bad_configs():
    assert PRESETS["pro"].stage_channels[-1] == 1536 and PRESETS["nano"].patch_size == (288, 288, 96)
    assert make_config("nano", patch_size=[64, 64, 32]).patch_size == (64, 64, 32)
    with pytest.raises(ModelError, match="Unknown SAT variant 'huge'"):
        build_sat("huge")
    with pytest.raises(ModelError, match="Unknown SAT configuration field"):
        build_sat("nano", channels=3)
    with pytest.raises(ModelError, match="not divisible by num_heads"):
        build_sat("nano", query_dim=100)
    with pytest.raises(ModelError, match="multiples of 32"):
        build_sat("nano", patch_size=(96, 96, 40))
    with pytest.raises(ModelError, match="stage_channels"):
        SATConfig(stage_channels=(8,)).validate()


def test_small_config_size_and_shapes():
    model = _small()
    n_params = sum(p.numel() for p in model.parameters())
    assert 10_000 < n_params < 1_000_000
    x = torch.randn(2, 3, 16, 32, 16)
    q = torch.randn(2, 5, 32)
    with torch.no_grad():
        out = model(x, q)
    assert out.shape == (2, 5, 16, 32, 16) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_split_equals_forward_and_queries_are_independent():
    model = _small()
    x = torch.randn(1, 3, 32, 16, 16)
    q = torch.randn(3, 32)
    with torch.no_grad():
        full = model(x, q)
        feats = model.encode_image(x)
        parts = torch.cat([model.decode(feats, q[i:i + 1]) for i in range(3)], 1)
        batched = model.decode(feats, q[None])
    assert torch.allclose(full, parts, atol=1e-5)
    assert torch.equal(full, batched)


def test_low_memory_path_matches_plain_path():
    model = _small()
    x = torch.randn(1, 3, 32, 16, 32)
    q = torch.randn(2, 32)
    with torch.inference_mode():
        model.low_memory = False
        plain = model(x, q)
        model.low_memory, model.slab_bytes = True, 4096  # one output row per slab
        low = model(x, q)
    assert torch.allclose(plain, low, atol=1e-4, rtol=1e-4)
    model.low_memory = True
    y = model(x, q)  # with autograd on, the plain path is used regardless
    assert y.requires_grad


def test_training_step_reduces_loss():
    model = _small().train()
    x = torch.randn(1, 3, 16, 16, 16)
    target = (x[:, :1] > 0).float().expand(1, 2, -1, -1, -1)
    q = torch.randn(2, 32)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x, q), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_bad_inputs_raise_model_error():
    model = _small()
    with pytest.raises(ModelError, match="multiple of 8"):
        model(torch.zeros(1, 3, 12, 16, 16), torch.zeros(1, 32))
    with pytest.raises(ModelError, match=r"shape \(B, 3, X, Y, Z\)"):
        model(torch.zeros(1, 1, 16, 16, 16), torch.zeros(1, 32))
    with pytest.raises(ModelError, match="queries must have shape"):
        model(torch.zeros(1, 3, 16, 16, 16), torch.zeros(1, 768))
    nan_image = torch.zeros(1, 3, 16, 16, 16)
    nan_image[0, 1, 3, 4, 5] = float("nan")
    with pytest.raises(ModelError, match="NaN or infinite"):
        model(nan_image, torch.zeros(1, 32))
    with pytest.raises(ModelError, match="queries contain NaN"):
        model(torch.zeros(1, 3, 16, 16, 16), torch.full((1, 32), float("inf")))


def test_position_table_layout():
    big = position_table((9, 9, 3), 768)
    small = position_table((3, 2, 1), 768)
    assert big.shape == (243, 768)
    # leading sub-block of the 9x9x3 table, X-major / Z-fastest order
    assert torch.equal(big.view(9, 9, 3, 768)[:3, :2, :1].reshape(6, 768), small)
    assert torch.equal(big[0, 0::2][:128], torch.zeros(128))  # sin(0) at index 0
    odd = position_table((2, 2, 2), 32)  # non-multiple-of-6 widths are truncated
    assert odd.shape == (8, 32)


def test_position_table_from_inference_mode_is_usable_for_training():
    model = _small()
    x = torch.randn(1, 3, 8, 24, 8)  # a grid no other test uses
    q = torch.randn(1, 32)
    with torch.inference_mode():
        model(x, q)  # fills the cached position table inside inference mode
    model.train()
    model(x, q).sum().backward()  # must not complain about inference tensors
    assert model.transformer_decoder.layers[0].multihead_attn.in_proj_weight.grad is not None
