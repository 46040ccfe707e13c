"""VoxTell behind the engine protocol: safe loading, exact geometry, parity with voxtell's predictor."""
from __future__ import annotations

import itertools
import os
import pickle
import socket

import numpy as np
import pytest

pytest.importorskip("voxtell", reason="the optional voxtell package is not installed (pip install 'textseg[voxtell]')")

import torch  # noqa: E402

from _voxtell_helpers import ct_like, make_model_folder  # noqa: E402
from TextSegLib.errors import CancelledError, CheckpointError, ModelError  # noqa: E402
from TextSegLib.models.voxtell import load_voxtell_engine  # noqa: E402
from TextSegLib.models.voxtell.checkpoint import load_weights  # noqa: E402
from TextSegLib.models.voxtell.geometry import VoxTellGrid  # noqa: E402
from TextSegLib.volume import Volume  # noqa: E402

TORCH_PIN = "2.13.0"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("voxtell-model"))


@pytest.fixture(scope="module")
def engine(model_folder):
    eng = load_voxtell_engine(model_folder, device="cpu")
    eng.presence = None  # parity: the package's own masks
    return eng


def _rot(ax: int, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    r = np.eye(3)
    i, j = [a for a in range(3) if a != ax]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _volume(kind: str, shape=(40, 44, 36)) -> Volume:
    """LPS (as DICOM), oblique, reversed slices and non-isotropic grids."""
    if kind == "lps":
        d, sp = np.diag([-1.0, -1.0, 1.0]), (0.8, 0.8, 1.5)
    elif kind == "oblique":
        d, sp = _rot(2, 12) @ _rot(0, 9) @ np.diag([-1.0, -1.0, 1.0]), (0.9, 0.9, 1.2)
    elif kind == "reversed":
        d, sp = np.diag([1.0, -1.0, -1.0]), (1.0, 1.0, 2.0)
    else:  # permuted axes, very anisotropic (a sagittal-like stack)
        d, sp = np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]), (0.7, 1.1, 3.0)
    m = np.eye(4)
    m[:3, :3] = d @ np.diag(sp)
    m[:3, 3] = (12.0, -30.0, 55.0)
    return Volume(ct_like(shape), m, "ct", kind)


def _write_nifti(volume: Volume, path) -> str:
    import nibabel

    nibabel.save(nibabel.Nifti1Image(volume.array.astype(np.float32), volume.ijk_to_ras), str(path))
    return str(path)


# -- (1) safe loading -----------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_pickled_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    ck = tmp_path / "fold_0" / "checkpoint_final.pth"
    ck.parent.mkdir()
    torch.save({"network_weights": {"w": torch.zeros(2)}, "trainer": _Payload(str(marker))}, ck)
    with pytest.raises(CheckpointError) as err:
        load_weights(ck)
    assert not marker.exists()
    msg = str(err.value)
    assert "\n" not in msg and "refused" in msg and "weights_only" in msg
    # the same file through plain pickle *would* run it: the test payload is real
    pickle.loads(pickle.dumps(_Payload(str(marker))))
    assert marker.exists()


def test_checkpoint_with_numpy_log_loads_and_mismatch_is_one_line(model_folder, tmp_path):
    sd = load_weights(model_folder / "fold_0" / "checkpoint_final.pth")  # holds np.float64 in its log
    assert all(isinstance(v, torch.Tensor) for v in sd.values()) and len(sd) > 100
    bad = tmp_path / "m"
    (bad / "fold_0").mkdir(parents=True)
    (bad / "plans.json").write_bytes((model_folder / "plans.json").read_bytes())
    torch.save({"network_weights": {"encoder.x": torch.zeros(1)}}, bad / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(CheckpointError, match="does not match plans.json") as err:
        load_voxtell_engine(bad, device="cpu")
    assert "\n" not in str(err.value)


def test_plans_naming_a_non_torch_class_is_refused(model_folder, tmp_path):
    import json

    plans = json.loads((model_folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (tmp_path / "plans.json").write_text(json.dumps(plans))
    from TextSegLib.models.voxtell.checkpoint import build_network

    with pytest.raises(ModelError, match="nonlin = 'os.system' is not a torch.nn layer"):
        build_network(tmp_path)


# -- (2) geometry ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lps", "oblique", "reversed", "anisotropic"])
def test_model_array_is_voxtells_reader_array_and_only_one_of_48(kind, tmp_path):
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIOWithReorient

    vol = _volume(kind)
    grid = VoxTellGrid.of(vol)
    ours = grid.to_model(vol.array)
    theirs, props = NibabelIOWithReorient().read_images([_write_nifti(vol, tmp_path / "v.nii.gz")])
    np.testing.assert_array_equal(ours, theirs[0])
    # every model voxel sits where its source voxel sits in RAS (reader's reoriented affine)
    aff = props["nibabel_stuff"]["reoriented_affine"]  # maps the reader's [r, a, s] indices
    model_affine = grid.model_ijk_to_ras(vol)
    np.testing.assert_allclose(model_affine[:3, :3][:, ::-1], aff[:3, :3], atol=1e-5)
    np.testing.assert_allclose(model_affine[:3, 3], aff[:3, 3], atol=1e-4)
    # the test tells apart all 48 axis orders and flips: only the right one matches
    ras = np.transpose(theirs[0], (2, 1, 0))
    matches = 0
    for perm in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            cand = np.transpose(vol.array, perm)
            cand = cand[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
            matches += cand.shape == ras.shape and np.array_equal(cand, ras)
    assert matches == 1
    assert np.array_equal(grid.to_source(ours), vol.array)


class _Threshold(torch.nn.Module):
    """Stand-in network: a prompt's logit is the (normalised) intensity above a level."""

    def forward(self, img, text):
        return img.repeat(1, text.shape[1], 1, 1, 1) - 1.0


@pytest.mark.parametrize("kind", ["lps", "oblique", "reversed", "anisotropic"])
def test_structure_placed_in_ras_lands_on_the_same_ras_voxels(model_folder, kind):
    from TextSegLib.models.voxtell.engine import VoxTellEngine

    vol = _volume(kind)
    ras = vol.ijk_to_ras_points(np.argwhere(np.ones(vol.shape, bool))).reshape(*vol.shape, 3)
    centre = vol.ijk_to_ras_points(np.array(vol.shape) / 2.0)[0] + (6.0, -4.0, 5.0)
    ball = np.linalg.norm(ras - centre, axis=-1) < 9.0
    arr = np.where(vol.array > 0, 40.0, vol.array).astype(np.float32)
    arr[ball] = 3000.0
    vol = vol.with_array(arr)
    base = load_voxtell_engine(model_folder, device="cpu")
    eng = VoxTellEngine(_Threshold(), base.patch_size, base.embeddings, device="cpu")
    eng.presence = None
    r = eng.segment(vol, ["liver"])
    np.testing.assert_array_equal(r.masks["liver"], ball)
    assert r.probabilities["liver"].shape == vol.shape


# -- (3) parity with the package's predictor -----------------------------------------------
def test_parity_with_predict_single_image_and_predict_from_files(engine, model_folder, tmp_path):
    import nibabel
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIOWithReorient
    from voxtell.inference.predictor import VoxTellPredictor

    vol = _volume("oblique")
    pkg = VoxTellPredictor(model_dir=str(model_folder), device=torch.device("cpu"),
                           embedding_bank=str(model_folder / "text_embeddings.npz"))
    nii = _write_nifti(vol, tmp_path / "case.nii.gz")
    img, _ = NibabelIOWithReorient().read_images([nii])
    prompts = ["liver", "spleen"]
    theirs = pkg.predict_single_image(img, prompts)
    r = engine.segment(vol, prompts)
    grid = VoxTellGrid.of(vol)
    for i, p in enumerate(prompts):
        assert r.found[p] == bool(theirs[i].any())
        np.testing.assert_array_equal(grid.to_model(r.masks[p]), theirs[i].astype(bool))
    # probabilities: sigmoid of the package's own logits on the model grid
    data, bbox, shape = pkg.preprocess(img)
    logits = pkg.predict_sliding_window_return_logits(data, pkg.embed_text_prompts(prompts)).float().numpy()
    for i, p in enumerate(prompts):
        ref = np.zeros(shape, np.float32)
        ref[tuple(slice(a, b) for a, b in bbox)] = 1 / (1 + np.exp(-logits[i]))
        diff = np.abs(grid.to_model(r.probabilities[p]) - ref)
        assert np.mean(diff <= 1e-5) >= 0.98, f"{p}: max difference {diff.max():.3g}"
    # the package's file path on the same NIfTI
    out = pkg.predict_from_files([nii], tmp_path / "out", prompts)
    for p, f in zip(prompts, out):
        np.testing.assert_array_equal(np.asarray(nibabel.load(f).dataobj).astype(bool), r.masks[p])


def test_progress_per_patch_and_cancel_within_one_patch(engine):
    from TextSegLib.engine.base import CancelToken

    vol = Volume(ct_like((60, 40, 40)), np.eye(4), "ct")  # 2 patches along one axis
    seen = []
    engine.segment(vol, ["liver"], progress=lambda s, d, t: seen.append((s, d, t)))
    tiles = [x for x in seen if x[0] == "tiles"]
    assert len(tiles) >= 2 and tiles[-1][1] == tiles[-1][2]
    tok = CancelToken()
    done = []

    def cancel_after_first(stage, d, t):
        if stage == "tiles":
            done.append(d)
            tok.cancel()

    with pytest.raises(CancelledError):
        engine.segment(vol, ["liver"], progress=cancel_after_first, cancel=tok)
    assert done == [1]


def test_offline_no_socket_is_opened(model_folder, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    eng = load_voxtell_engine(model_folder, device="cpu")
    r = eng.segment(Volume(ct_like(), np.eye(4), "ct"), ["liver", "left kidney"])
    assert set(r.masks) == {"liver", "left kidney"}
    assert r.info["embeddings"]["encoded"] == 0


def test_presence_on_gives_reasons(model_folder):
    eng = load_voxtell_engine(model_folder, device="cpu")
    assert eng.presence is not None and eng.presence.min_peak == 0.5
    r = eng.segment(_volume("lps"), ["liver"])
    assert r.reasons["liver"]
    assert "presence" in r.info


def test_install_kept_the_pinned_torch():
    assert torch.__version__.split("+")[0] == TORCH_PIN
    import sys

    import voxtell.inference.predictor  # noqa: F401

    assert "torchvision" not in sys.modules  # VoxTell's inference path never needs it
    # PyPI's torchvision (pulled by timm) does not import beside the CPU torch, and transformers then
    # fails to import any model (Qwen3, SAT's BERT): `make setup` removes it after installing the extra
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        import torchvision  # noqa: F401  (must import, else transformers' models break)
    import importlib

    importlib.import_module("transformers.models.qwen3.modeling_qwen3")
