"""Optional learned refiner: an adapter for nnInteractive (PyPI ``nnInteractive``).

nnInteractive (Isensee, Rokuss, Krämer et al., 2025, arXiv:2503.08373) is a
3D promptable segmentation network. Its code is Apache-2.0, but its
**model weights are CC BY-NC-SA 4.0: non-commercial use only**. TextSeg
neither installs nor downloads it; install it yourself (it needs a CUDA
build of PyTorch) and point ``TEXTSEG_NNINTERACTIVE_MODEL`` (or
``model_dir``) at the unpacked checkpoint folder (e.g. ``nnInteractive_v1.0``).

Each call seeds the session with the current mask
(``add_initial_seg_interaction``), then adds the clicks and boxes. The
official checkpoints accept 2D boxes only (one slice thick).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ModelError
from ..volume import Volume
from .builtin import Interaction
from .geometry import Region, RefineInputError, VoxelBox

LICENSE_NOTE = (
    "nnInteractive model weights are licensed CC BY-NC-SA 4.0 (non-commercial use only)."
)
MODEL_ENV = "TEXTSEG_NNINTERACTIVE_MODEL"


def nninteractive_available() -> bool:
    """True when the ``nnInteractive`` package can be imported."""
    try:
        import nnInteractive  # noqa: F401
    except Exception:
        return False
    return True


def box_to_bbox(box: VoxelBox) -> list[list[int]]:
    """nnInteractive's half-open ``[[i0, i1], [j0, j1], [k0, k1]]`` for a slice box."""
    if box.flat_axis is None:
        raise RefineInputError(
            "nnInteractive's checkpoints accept 2D boxes only; this box spans several slices.",
            "Draw the box on one slice, or use the built-in engine for a 3D box.",
        )
    idx = np.argwhere(box.inside) + np.asarray(box.region.start)
    lo, hi = idx.min(0), idx.max(0) + 1
    return [[int(a), int(b)] for a, b in zip(lo, hi)]


class NNInteractiveRefiner:
    """:class:`~TextSegLib.refine.api.Refiner` backed by an nnInteractive session.

    ``session`` may be given directly (an object with nnInteractive's
    session methods); otherwise one is created on first use from
    ``model_dir`` on ``device`` ("cuda" when available, else "cpu").
    """

    name = "nninteractive"
    license_note = LICENSE_NOTE

    def __init__(self, model_dir: str | None = None, device: str | None = None, session: Any = None):
        self.model_dir = model_dir or os.environ.get(MODEL_ENV)
        self.device = device
        self._session = session
        self._image_key: tuple | None = None

    def _make_session(self) -> Any:
        if not nninteractive_available():
            raise ModelError(
                "The nnInteractive package is not installed.",
                f"Install it with a CUDA PyTorch (pip install nnInteractive) or use the built-in engine. {LICENSE_NOTE}",
            )
        if not self.model_dir or not os.path.isdir(self.model_dir):
            raise ModelError(
                f"nnInteractive checkpoint folder {self.model_dir!r} not found.",
                f"Set {MODEL_ENV} to the unpacked checkpoint folder (e.g. .../nnInteractive_v1.0). {LICENSE_NOTE}",
            )
        import torch
        from nnInteractive.inference.inference_session import nnInteractiveInferenceSession

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        session = nnInteractiveInferenceSession(
            device=torch.device(device), use_torch_compile=False, verbose=False,
            torch_n_threads=os.cpu_count() or 1, do_autozoom=True,
            use_pinned_memory=device.startswith("cuda"),
        )
        session.initialize_from_trained_model_folder(self.model_dir)
        return session

    def apply(self, volume: Volume, mask: np.ndarray, req: Interaction) -> tuple[np.ndarray, Region | None]:
        """Seed with ``mask``, add clicks and boxes, return the predicted mask."""
        bboxes = [box_to_bbox(b) for b in req.boxes]
        if req.text_engine is not None:
            raise RefineInputError(
                "A text engine cannot be combined with the nnInteractive refiner.",
                "Use the built-in refiner for box re-runs of the text model.",
            )
        if self._session is None:
            self._session = self._make_session()
        s = self._session
        key = (id(volume.array), volume.shape)
        if key != self._image_key:
            s.set_image(np.asarray(volume.array)[None])  # nnInteractive: do not normalise
            self._image_key = key
        target = np.zeros(volume.shape, dtype=np.uint8)
        s.set_target_buffer(target)
        s.add_initial_seg_interaction(mask.astype(np.uint8), run_prediction=False)
        steps: list[tuple[str, Any, bool]] = [("point", tuple(int(v) for v in p), True) for p in req.positive]
        steps += [("point", tuple(int(v) for v in p), False) for p in req.negative]
        steps += [("bbox", b, True) for b in bboxes]
        for n, (kind, where, include) in enumerate(steps):
            if req.cancel:
                req.cancel.check()
            last = n == len(steps) - 1
            if kind == "point":
                s.add_point_interaction(where, include_interaction=include, run_prediction=last)
            else:
                s.add_bbox_interaction(where, include_interaction=include, run_prediction=last)
        out = getattr(s, "target_buffer", target)
        out = out.cpu().numpy() if hasattr(out, "cpu") else np.asarray(out)
        return out.astype(bool), None
