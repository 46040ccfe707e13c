"""SATEngine: Engine protocol, source-grid results, cache, progress/cancel, devices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _engine_helpers import HashQueries, rotation, tiny_sat
from TextSegLib.engine.base import CancelToken, Engine
from TextSegLib.engine.device import DeviceError, autocast_factory, choose_device, resolve_precision
from TextSegLib.engine.preprocess import PreprocessConfig, preprocess
from TextSegLib.engine.resample import to_source_grid
from TextSegLib.engine.sat_engine import InferenceConfig, SATEngine, TableQueries
from TextSegLib.engine.sliding_window import run_sliding_window
from TextSegLib.errors import CancelledError, ModelError, TerminologyError
from TextSegLib.volume import Volume, make_ijk_to_ras

PATCH = (16, 16, 16)


@pytest.fixture(scope="module")
def volume() -> Volume:
    """An oblique, anisotropic, LPS-ish CT-like volume with a bright blob."""
    a = np.full((30, 26, 12), -1000, np.float32)
    a[6:24, 5:21, 2:10] = 40
    a[10:16, 8:14, 4:8] = 300
    direction = rotation((10, 0.3, -0.2, 0.5)) @ np.diag([-1.0, -1.0, 1.0])
    return Volume(a, make_ijk_to_ras((1.2, 1.2, 2.5), (50, 40, -30), direction), "ct", "blob")


@pytest.fixture(scope="module")
def engine() -> SATEngine:
    cfg = InferenceConfig(preprocess=PreprocessConfig(spacing=(2, 2, 2.5), crop_foreground=False),
                          patch_size=PATCH, device="cpu")
    return SATEngine(tiny_sat(patch=PATCH), HashQueries(16), cfg, name="tiny")


def test_masks_and_probabilities_on_the_source_grid(engine, volume):
    assert isinstance(engine, Engine)
    stages = []
    res = engine.segment(volume, ["liver", "spleen", "liver"], progress=lambda s, d, t: stages.append(s))
    assert list(res.masks) == ["liver", "spleen"]
    for name in res.masks:
        assert res.masks[name].shape == volume.shape and res.masks[name].dtype == bool
        assert res.probabilities[name].shape == volume.shape and res.probabilities[name].dtype == np.float16
    assert {"preprocess", "encode_text", "tiles", "postprocess", "total"} <= set(res.timings)
    assert stages[0] == "preprocess" and "tiles" in stages and stages[-1] == "postprocess"
    # the same numbers as running the pieces by hand
    pre = preprocess(volume, "ct", engine.config.preprocess)
    prob, _ = run_sliding_window(pre.array, engine.model, HashQueries(16).get(["spleen"], "ct"),
                                 patch=PATCH, body=pre.body)
    manual = to_source_grid(prob[0], pre.grid, volume, kind="prob")
    assert np.allclose(manual, res.probabilities["spleen"].astype(np.float32), atol=1e-3)
    sure = np.abs(manual - 0.5) > 1e-4
    assert np.array_equal(res.masks["spleen"][sure], manual[sure] > 0.5)
    assert engine.vocabulary("ct") == ["liver", "spleen"]


def test_voxel_exact_inverse_at_source_spacing(volume):
    """A model that echoes a label channel maps it back exactly onto the source voxels."""

    class Echo(torch.nn.Module):
        def forward(self, image, queries):
            return (image[:, :1] - 0.5) * 40 * torch.ones(1, queries.shape[1], 1, 1, 1)

    label = np.zeros(volume.shape, np.float32)
    label[7:19, 6:11, 3:9] = 1.0
    cfg = InferenceConfig(preprocess=PreprocessConfig(spacing=None, normalisation="none"), patch_size=PATCH,
                          in_channels=1, device="cpu", skip_empty_tiles=False)
    eng = SATEngine(Echo(), HashQueries(4), cfg)
    res = eng.segment(volume.with_array(label), ["liver"], modality="ct")
    assert np.array_equal(res.masks["liver"], label > 0.5)


def test_cache_roi_cancel_and_errors(engine, volume):
    hq = engine.queries
    a = engine.segment(volume, ["liver"], cache_key=("vtkMRMLScalarVolumeNode1", 7))
    b = engine.segment(volume, ["liver"], cache_key=("vtkMRMLScalarVolumeNode1", 7))
    assert not a.info["cache_hit"] and b.info["cache_hit"]
    assert np.array_equal(a.masks["liver"], b.masks["liver"])
    c = volume.ijk_to_ras_points([[15, 13, 6]])[0]
    small = SATEngine(tiny_sat(patch=(8, 8, 8)), HashQueries(16),
                      InferenceConfig(preprocess=engine.config.preprocess, patch_size=(8, 8, 8), device="cpu"))
    roi = small.segment(volume, ["liver"], roi_ras=(c - 3, c + 3))
    assert roi.info["roi_box"] is not None
    # nothing outside the (grown-to-one-patch) ROI box; corners of the scan are far from it
    assert not roi.masks["liver"][0, 0, 0] and not roi.masks["liver"][29, 25, 11]
    assert not roi.probabilities["liver"][0, 0, 0] and not roi.probabilities["liver"][29, 25, 11]
    assert roi.masks["liver"].sum() < volume.array.size
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(CancelledError):
        engine.segment(volume, ["liver"], cancel=tok)
    with pytest.raises(TerminologyError, match="No prompt"):
        engine.segment(volume, ["  "])
    with pytest.raises(TerminologyError, match="modality"):
        engine.segment(volume.with_array(volume.array, modality=""), ["liver"])
    assert hq.calls > 0

    class Bad:
        def get(self, texts, modality):
            return torch.zeros(len(texts) + 1, 16)

    with pytest.raises(ModelError, match="Query provider"):
        SATEngine(engine.model, Bad(), engine.config).segment(volume, ["liver"])


def test_table_queries(tmp_path):
    t = TableQueries({"ct": {"Liver": torch.ones(4), "left kidney": torch.zeros(4)}})
    t.save(tmp_path / "q.pt")
    t2 = TableQueries.load(tmp_path / "q.pt")
    assert t2.vocabulary("ct") == ["left kidney", "liver"]
    assert torch.equal(t2.get(["LIVER"], "ct"), torch.ones(1, 4))
    with pytest.raises(TerminologyError, match="left kidney"):
        t2.get(["left kidny"], "ct")
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(ModelError, match="cannot read"):
        TableQueries.load(tmp_path / "bad.pt")


def test_devices():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(DeviceError, match="Unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA"):
            choose_device("cuda")
    else:
        assert choose_device("cuda:0").type == "cuda"
    if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        with pytest.raises(DeviceError, match="MPS"):
            choose_device("mps")
    cpu = torch.device("cpu")
    assert resolve_precision(cpu) == torch.float32
    assert resolve_precision(torch.device("cuda"), "auto") == torch.float16
    with pytest.raises(DeviceError):
        autocast_factory(cpu, torch.float16)
    with autocast_factory(cpu, torch.bfloat16)():
        y = torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2))
    assert y.dtype == torch.bfloat16


def test_memory_cap_runs_prompts_in_groups_with_the_same_result(engine, volume):
    from dataclasses import replace

    full = engine.segment(volume, ["liver", "spleen", "aorta"])
    capped = SATEngine(engine.model, HashQueries(16), replace(engine.config, max_accumulator_bytes=1))
    res = capped.segment(volume, ["liver", "spleen", "aorta"])
    assert full.info["prompt_groups"] == 1 and res.info["prompt_groups"] == 3
    for k in full.masks:
        assert np.array_equal(full.masks[k], res.masks[k])
        assert np.array_equal(full.probabilities[k], res.probabilities[k])
