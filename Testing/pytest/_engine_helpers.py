"""Helpers for the engine tests (owned by the SAT-inference area)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from TextSegLib.volume import Volume, make_ijk_to_ras

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Testing" / "Data"
SAT_REF = REPO / "Testing" / "Data" / "sat-reference"  # the SAT parity fixtures (see its README.md)


def find_data(name: str) -> Path:
    """First file called ``name`` under Testing/Data."""
    hits = sorted(DATA.rglob(name))
    if not hits:
        raise FileNotFoundError(name)
    return hits[0]


def read_nifti(path: Path, modality: str = "") -> Volume:
    """A Volume read with SimpleITK (LPS → RAS), independent of TextSegLib.io."""
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    lps = np.diag([-1.0, -1.0, 1.0])
    direction = lps @ np.asarray(img.GetDirection()).reshape(3, 3)
    origin = lps @ np.asarray(img.GetOrigin())
    return Volume(arr, make_ijk_to_ras(img.GetSpacing(), origin, direction), modality, path.name)


def rotation(q: tuple[float, float, float, float]) -> np.ndarray:
    """Rotation matrix of a (non-normalised) quaternion."""
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


class HashQueries:
    """Deterministic per-(modality, text) query vectors for tests with random-weight models."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.calls = 0

    def get(self, texts, modality):
        import zlib

        import torch

        self.calls += 1
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(zlib.crc32(f"{modality}:{t}".encode()))
            rows.append(torch.randn(self.dim, generator=g))
        return torch.stack(rows)

    def vocabulary(self, modality):
        return ["liver", "spleen"] if modality == "ct" else []


def tiny_sat(patch=(64, 64, 32), seed: int = 0):
    """A small SAT (same code as SAT-Nano, fewer channels) with fixed random weights."""
    import torch

    from TextSegLib.models.sat import build_sat

    torch.manual_seed(seed)
    return build_sat("nano", stage_channels=(4, 8, 16), query_dim=16, num_heads=2, ffn_dim=32,
                     mask_hidden=8, proj_hidden=16, num_layers=1, patch_size=patch).eval()


def formula_state_dict(model) -> dict:
    """The SAT reference's deterministic formula weights for ``model``'s own keys."""
    from _formula_weights import weight_for

    return {k: weight_for(k, tuple(v.shape)) for k, v in model.state_dict().items()}


TINY = dict(stage_channels=[4, 8, 16], query_dim=16, num_heads=2, ffn_dim=32, mask_hidden=8,
            proj_hidden=16, num_layers=1, patch_size=[64, 64, 32])


def make_model_folder(folder: Path, terms=("liver", "spleen", "left kidney")) -> Path:
    """A complete small-config SAT model folder: formula-weight checkpoint, query table, manifest."""
    import json

    import torch

    from TextSegLib.engine.sat_engine import TableQueries
    from TextSegLib.models.sat import build_sat

    folder.mkdir(parents=True, exist_ok=True)
    model = build_sat("nano", **TINY)
    torch.save({"model_state_dict": formula_state_dict(model)}, folder / "small.pth")
    q = HashQueries(TINY["query_dim"])
    TableQueries({m: dict(zip(terms, q.get(list(terms), m))) for m in ("ct", "mri")}).save(folder / "queries.pt")
    (folder / "textseg-model.json").write_text(json.dumps({
        "name": "sat-small", "architecture": "sat", "variant": "nano", "overrides": TINY,
        "checkpoint": "small.pth", "queries": {"type": "table", "file": "queries.pt"},
        "inference": {"spacing": [5, 5, 5], "patch_size": [64, 64, 32]},
    }))
    return folder
