"""Numerical parity of the SAT re-implementation with the authors' reference outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _sat_helpers import formula_state_dict, need_reference, _one_torch_thread  # noqa: F401
from TextSegLib.models.sat import build_sat, build_sat_text_encoder, load_sat_checkpoint, load_text_encoder_checkpoint

ATOL = RTOL = 1e-4


def _close(actual: torch.Tensor, ref: np.ndarray) -> float:
    """Max of |a-b| - (atol + rtol|ref|); <= 0 means within tolerance."""
    r = torch.from_numpy(np.asarray(ref, dtype=np.float32))
    assert actual.shape == r.shape
    return float(((actual.float() - r).abs() - (ATOL + RTOL * r.abs())).max())


def _fingerprint(sd: dict) -> float:
    return sum(float(v.double().sum()) for v in sd.values() if v.is_floating_point())


@pytest.fixture(scope="module")
def nano_case():
    ref = need_reference()
    sd = formula_state_dict("nano")
    with torch.device("meta"):  # no random init: the checkpoint provides every tensor
        model = build_sat("nano", patch_size=(96, 64, 32)).eval()
    load_sat_checkpoint(model, {"model_state_dict": sd})
    z = np.load(ref / "forward-nano.npz")
    with torch.inference_mode():
        model.low_memory = False
        feats = model.encode_image(torch.from_numpy(z["image"]))
        model.low_memory = None
    return model, z, feats


def test_weight_fingerprints_match_readme():
    sd = formula_state_dict("nano")
    assert _fingerprint(sd) == pytest.approx(25440.657168, abs=1e-3)
    first = sd["module.backbone.encoder.stages.0.0.convs.0.conv.weight"].flatten()[:3]
    assert torch.allclose(first, torch.tensor([-0.093788, 0.093636, 0.168045]), atol=1e-6)
    text = formula_state_dict("text-encoder")
    assert _fingerprint(text) == pytest.approx(18687.311133, abs=1e-3)
    assert torch.allclose(text["module.modality_embed.weight"][0, :3],
                          torch.tensor([-0.045678, 0.007948, -0.077372]), atol=1e-6)


@pytest.mark.parametrize("low_memory", [False, True], ids=["plain", "low_memory"])
def test_forward_nano_parity(nano_case, low_memory):
    model, z, feats = nano_case
    with torch.inference_mode():
        if low_memory:
            model.low_memory, model.slab_bytes = True, 1 << 22  # several slabs per conv here
            feats = model.encode_image(torch.from_numpy(z["image"]))
            model.low_memory, model.slab_bytes = None, 1 << 28
        logits = model.decode(feats, torch.from_numpy(z["queries"][0]))
    assert _close(feats.pos, z["debug_pos_embedding"][:, 0]) <= 0
    assert _close(feats.memory.reshape(1, 3, 2, 1, 768), z["debug_image_tokens"]) <= 0
    assert _close(feats.pixels.mean((2, 3, 4)), z["debug_ppe_channel_mean"]) <= 0
    assert _close(feats.pixels[:, :, :, :, 16], z["debug_ppe_slice"]) <= 0
    assert _close(logits, z["logits"]) <= 0
    # fp32 error against the float64 run is of the authors' own order
    assert float((logits.double() - torch.from_numpy(z["logits_fp64"])).abs().max()) < 1e-4


def test_forward_batch_queries_equal_shared_queries(nano_case):
    model, z, feats = nano_case
    q = torch.from_numpy(z["queries"][0])
    with torch.inference_mode():
        a = model.decode(feats, q)
        b = model.decode(feats, q[None, 1:2])  # one prompt alone gives the same map
    assert torch.allclose(a[:, 1:2], b, atol=1e-5)


def test_text_head_parity_both_modalities():
    ref = need_reference()
    z = np.load(ref / "text-head.npz")
    with torch.device("meta"):  # no random init; position_ids is rebuilt after loading
        enc = build_sat_text_encoder()
    report = load_text_encoder_checkpoint(enc, {"model_state_dict": formula_state_dict("text-encoder")})
    assert report.ignored == ["text_tower.biolord.embeddings.position_ids"]
    assert sorted(set(z["modality_idx"].tolist())) == [0, 1]
    with torch.inference_mode():
        q = enc.encode_ids(torch.from_numpy(z["ids"]), torch.from_numpy(z["attention_mask"]),
                           torch.from_numpy(z["modality_idx"]))
    assert _close(q, z["queries"]) <= 0


def test_parity_fixtures_ship_with_the_repository(monkeypatch):
    """A plain clone runs these tests: the cases are in Testing/Data, the weights are made here."""
    from _sat_helpers import BUNDLED_REFERENCE, reference_dir

    monkeypatch.delenv("TEXTSEG_SAT_REFERENCE", raising=False)
    assert reference_dir() == BUNDLED_REFERENCE
    for name in ("forward-nano.npz", "text-head.npz", "preprocess-ct.npz", "tiling.json", "keys-pro.tsv"):
        assert (BUNDLED_REFERENCE / name).is_file(), name
    assert not (BUNDLED_REFERENCE / "weights.py").exists()  # our own generator, _formula_weights.py
