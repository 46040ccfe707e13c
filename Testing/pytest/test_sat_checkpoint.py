"""Strict SAT checkpoint loading: released layout, key errors, unsafe/invalid files, key lists."""
from __future__ import annotations

import hashlib

import pytest
import torch

from _sat_helpers import formula_state_dict, read_tsv, _one_torch_thread  # noqa: F401
from TextSegLib.errors import CheckpointError, ModelError
from TextSegLib.models.sat import (build_sat, build_sat_text_encoder, file_sha256, load_sat_checkpoint,
                                   load_text_encoder_checkpoint)

SMALL = dict(stage_channels=(4, 8, 8), convs_per_stage=1, proj_hidden=16, query_dim=16, num_heads=2,
             num_layers=1, ffn_dim=16, mask_hidden=8, patch_size=(8, 8, 8))


class NotATensor:
    """A picklable object that weights_only loading must refuse."""


def _released(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {"module." + k: v.clone() for k, v in model.state_dict().items()}


def _expected_from_tsv(name: str) -> dict[str, tuple[int, ...]]:
    return {k[len("module."):]: shape for k, shape, alias, flags in read_tsv(name)
            if not alias and not flags}


@pytest.mark.parametrize("variant", ["nano", "pro"])
def test_model_keys_equal_released_key_list(variant):
    with torch.device("meta"):
        model = build_sat(variant)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected_from_tsv(variant)
    assert list(got) == list(_expected_from_tsv(variant))  # same order too


def test_text_encoder_keys_equal_released_key_list():
    with torch.device("meta"):
        enc = build_sat_text_encoder()
    got = {k: tuple(v.shape) for k, v in enc.state_dict().items()}
    assert got == _expected_from_tsv("text-encoder")


def test_released_nano_file_loads_strictly(tmp_path):
    sd = formula_state_dict("nano")
    assert any(".all_modules." in k for k in sd) and any("mid_mask_embed_proj" in k for k in sd)
    path = tmp_path / "nano.pth"
    optimizer_state = {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-4, "params": [0]}]}
    torch.save({"step": 1000, "model_state_dict": sd, "optimizer_state_dict": optimizer_state}, path)
    with torch.device("meta"):
        model = build_sat("nano")
    report = load_sat_checkpoint(model, path)
    assert (report.loaded, len(report.ignored), report.aliases) == (192, 12, 88)
    assert all(k.startswith("mid_mask_embed_proj.") for k in report.ignored)
    w = model.backbone.encoder.stages[0][0].convs[0].conv.weight
    assert not w.is_meta and torch.equal(w, sd["module.backbone.encoder.stages.0.0.convs.0.conv.weight"])


def test_safetensors_and_plain_state_dict(tmp_path):
    from safetensors.torch import save_file

    src = build_sat("nano", **SMALL)
    path = tmp_path / "small.safetensors"
    save_file(src.state_dict(), str(path))
    dst = build_sat("nano", **SMALL)
    report = load_sat_checkpoint(dst, path)
    assert report.loaded == len(src.state_dict()) and report.ignored == []
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    legacy = tmp_path / "legacy.pth"  # old non-zip format: cannot be memory-mapped, still loads
    torch.save(_released(src), legacy, _use_new_zipfile_serialization=False)
    assert load_sat_checkpoint(build_sat("nano", **SMALL), legacy).loaded == len(src.state_dict())


def test_alias_only_checkpoint_loads_and_inconsistent_alias_fails():
    src = build_sat("nano", **SMALL)
    sd = _released(src)
    conv = "module.backbone.encoder.stages.0.0.convs.0.conv.weight"
    alias = conv.replace(".conv.weight", ".all_modules.0.weight")
    sd[alias] = sd.pop(conv)  # only the alias spelling present
    load_sat_checkpoint(build_sat("nano", **SMALL), {"model_state_dict": sd})
    sd[conv] = sd[alias] + 1.0  # both present but different
    with pytest.raises(CheckpointError, match="alias key"):
        load_sat_checkpoint(build_sat("nano", **SMALL), {"model_state_dict": sd})


def test_missing_unexpected_wrong_shape_are_reported():
    model = build_sat("nano", **SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    good = _released(model)
    missing = dict(good)
    del missing["module.mask_embed_proj.0.weight"]
    with pytest.raises(CheckpointError, match=r"missing 1 \[mask_embed_proj\.0\.weight\]"):
        load_sat_checkpoint(model, {"model_state_dict": missing})
    extra = dict(good, **{"module.seg_head.weight": torch.zeros(2)})
    with pytest.raises(CheckpointError, match=r"unexpected 1 \[seg_head\.weight\]"):
        load_sat_checkpoint(model, extra)
    shape = dict(good, **{"module.projection_layer.0.bias": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"wrong shape 1 \[projection_layer\.0\.bias \(3,\)!=\(16,\)\]"):
        load_sat_checkpoint(model, shape)
    with pytest.raises(CheckpointError, match=r"missing \d+ \[.*\(\+\d+ more\)"):
        load_sat_checkpoint(model, {"module.seg_head.weight": torch.zeros(2)})
    for k, v in model.state_dict().items():  # failed loads leave the model untouched
        assert torch.equal(v, before[k]), k


def test_pickled_objects_are_refused(tmp_path):
    model = build_sat("nano", **SMALL)
    path = tmp_path / "with_object.pth"
    torch.save({"model_state_dict": _released(model), "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_sat_checkpoint(model, path)
    whole = tmp_path / "whole_module.pth"
    torch.save(model, whole)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_sat_checkpoint(model, whole)


def test_non_checkpoint_files(tmp_path):
    model = build_sat("nano", **SMALL)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_sat_checkpoint(model, text)
    bad_st = tmp_path / "broken.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        load_sat_checkpoint(model, bad_st)
    numbers = tmp_path / "numbers.pth"
    torch.save({"model_state_dict": {"a": 1}}, numbers)
    with pytest.raises(CheckpointError, match="non-tensor"):
        load_sat_checkpoint(model, numbers)
    lst = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lst)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_sat_checkpoint(model, lst)
    with pytest.raises(ModelError, match="does not exist"):
        load_sat_checkpoint(model, tmp_path / "absent.pth")


def test_text_encoder_tolerates_only_position_ids():
    with torch.device("meta"):
        enc = build_sat_text_encoder()
    sd = dict(formula_state_dict("text-encoder"))
    sd["module.text_tower.biolord.pooler.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected 1"):
        load_text_encoder_checkpoint(enc, {"model_state_dict": sd})


def test_file_sha256_incremental_and_cached(tmp_path):
    path = tmp_path / "w.bin"
    data = bytes(range(256)) * 50000
    path.write_bytes(data)
    assert file_sha256(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data + b"x")  # size changes -> recomputed
    assert file_sha256(path) == hashlib.sha256(data + b"x").hexdigest()


def test_half_precision_checkpoint_into_meta_model_gets_model_dtype():
    src = build_sat("nano", **SMALL)
    half = {k: v.half() for k, v in src.state_dict().items()}
    with torch.device("meta"):
        dst = build_sat("nano", **SMALL)
    load_sat_checkpoint(dst, half)
    assert all(p.dtype == torch.float32 and not p.is_meta for p in dst.parameters())
    with torch.no_grad():
        out = dst(torch.randn(1, 3, 8, 8, 8), torch.randn(2, 16))
    assert out.shape == (1, 2, 8, 8, 8)
