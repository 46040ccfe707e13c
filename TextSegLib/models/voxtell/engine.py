"""VoxTell behind TextSeg's one engine protocol.

``VoxTellEngine.segment(volume, prompts)``:

1. resolves the prompts (free text allowed: VoxTell encodes any text) and picks each
   one's VoxTell text (:func:`.text.bank_text`);
2. gets the embeddings from the bank, the disk cache or the lazy encoder;
3. reorients the volume to VoxTell's RAS array by permutation and flips only
   (:mod:`.geometry`), no resampling;
4. runs ``voxtell``'s own preprocessing (crop to non-zero, z-score) and sliding window
   (``VoxTellPredictor.preprocess`` / ``predict_sliding_window_return_logits``: Gaussian
   weighted, float16 accumulation, fp16 autocast on CUDA), with its
   ``progress_callback`` giving per-patch progress and stopping within one patch on cancel;
5. keeps ``sigmoid(logits)`` (float32) and the mask ``logits > 0`` (VoxTell's own
   threshold) per prompt, written straight onto the source grid voxel for voxel through a
   view in the model's axis order (no full-size intermediate, no copy);
6. applies the model-agnostic presence rules (:data:`PRESENCE`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Hashable, Sequence

import numpy as np
import torch

from ...engine.base import CancelToken, EngineResult, ProgressCallback
from ...engine.device import choose_device
from ...engine.presence import PresenceRules
from ...errors import CancelledError, TerminologyError
from ...volume import Volume, normalize_modality
from .geometry import VoxTellGrid, roi_index_box
from .text import PromptEmbeddings

#: The presence rules for VoxTell. Laterality, body region, one body and the plausible minimum
#: volume are model-agnostic and stay on. The peak-probability rule is off (``min_peak`` = 0.5,
#: VoxTell's own threshold, so it never drops a voxel VoxTell keeps): its 0.65 was calibrated on
#: textseg-mini, and no labelled VoxTell output could be run here to calibrate it.
PRESENCE = PresenceRules(min_peak=0.5)


def make_predictor(network: torch.nn.Module, patch_size, device: torch.device):
    """A ``VoxTellPredictor`` around an already loaded network, without its ``__init__``
    (which unpickles the checkpoint with ``weights_only=False`` and may reach the hub).
    Sets the attributes its ``__init__`` sets in voxtell 0.1.2."""
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization
    from voxtell.inference.predictor import VoxTellPredictor

    pred = object.__new__(VoxTellPredictor)
    pred.device = device
    pred.normalization = ZScoreNormalization(intensityproperties={})
    pred.tile_step_size = 0.5
    pred.perform_everything_on_device = True
    pred._text_encoding_model = None  # never loaded by the predictor: TextSeg embeds prompts
    pred.tokenizer = None
    pred.text_backbone = None
    pred.max_text_length = 8192
    pred.embedding_bank = None
    pred.patch_size = list(patch_size)
    pred.network = network.eval()
    return pred


class VoxTellEngine:
    """Engine protocol implementation for VoxTell (see the module docstring)."""

    free_text = True
    presence: PresenceRules | None = PRESENCE

    def __init__(self, network: torch.nn.Module, patch_size, embeddings: PromptEmbeddings, *,
                 name: str = "VoxTell", device: str = "auto", folder: Path | None = None) -> None:
        self.name = name
        self.folder = folder
        self.device = choose_device(device)
        if self.device.type == "mps":  # VoxTell's autocast / empty_cache paths know CUDA and CPU only
            self.device = torch.device("cpu")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.embeddings = embeddings
        self.predictor = make_predictor(network.to(self.device), patch_size, self.device)
        self.patch_size = tuple(int(v) for v in patch_size)

    # -- protocol -------------------------------------------------------------------------
    def vocabulary(self, modality: str) -> list[str]:
        """The embedding bank's prompts (VoxTell has one text space for every modality)."""
        return sorted(self.embeddings.bank)

    @property
    def modalities(self) -> tuple[str, ...] | None:
        return None  # CT, MRI and PET alike

    def texts_for(self, prompts: Sequence, modality: str = "") -> list:
        from ...knowledge.resolved import engine_prompts

        return engine_prompts(self, prompts, normalize_modality(modality))

    def segment(self, volume: Volume, prompts: Sequence, *, modality: str | None = None,
                roi_ras=None, progress: ProgressCallback | None = None, cancel: CancelToken | None = None,
                cache_key: Hashable | None = None) -> EngineResult:
        from .text import bank_text

        if not [p for p in prompts if (p if isinstance(p, str) else getattr(p, "text", "")).strip()]:
            raise TerminologyError("No prompt given.", "Name at least one structure, e.g. -p liver.")
        modality = normalize_modality(modality) or volume.modality
        resolved = self.texts_for(prompts, modality)
        keys = [p.text for p in resolved]
        sent = [bank_text(p, self.embeddings.bank) for p in resolved]
        timings: dict[str, float] = {}
        if cancel is not None:
            cancel.check()

        t = time.perf_counter()
        if progress:
            progress("encode", 0, 1)
        emb = self.embeddings.get(sent)
        timings["encode_text"] = time.perf_counter() - t
        if progress:
            progress("encode", 1, 1)
        if cancel is not None:
            cancel.check()

        t = time.perf_counter()
        box = None if roi_ras is None else roi_index_box(volume, roi_ras)
        if roi_ras is not None and box is None:
            raise TerminologyError("The region of interest does not overlap the scan.",
                                   "Place the ROI box on the image, or segment without it.")
        sub = volume if box is None else Volume(
            np.ascontiguousarray(volume.array[tuple(slice(a, b) for a, b in zip(*box))]),
            _shifted(volume.ijk_to_ras, box[0]), volume.modality, volume.name)
        grid = VoxTellGrid.of(sub)
        data, bbox, orig_shape = self.predictor.preprocess(grid.to_model(sub.array))
        timings["geometry"] = time.perf_counter() - t

        t = time.perf_counter()
        logits = self.run_logits(data, emb, progress, cancel)
        timings["tiles"] = time.perf_counter() - t
        peak_gpu = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None

        t = time.perf_counter()
        masks: dict[str, np.ndarray] = {}
        probs: dict[str, np.ndarray] = {}
        found: dict[str, bool] = {}
        reasons: dict[str, str] = {}
        inner = tuple(slice(int(a), int(b)) for a, b in bbox)
        where = None if box is None else tuple(slice(a, b) for a, b in zip(*box))
        for i, key in enumerate(keys):
            if cancel is not None:
                cancel.check()
            m, p = self._to_source(logits[i], grid, volume.shape, where, inner)
            masks[key], probs[key] = m, p
            found[key] = bool(m.any())
            reasons[key] = "" if found[key] else "no voxel with a positive VoxTell logit"
            if progress:
                progress("postprocess", i + 1, len(keys))
        del logits
        timings["postprocess"] = time.perf_counter() - t
        timings["total"] = sum(timings.values())
        info = {"engine": self.name, "modality": modality, "device": str(self.device),
                "precision": "fp16" if self.device.type == "cuda" else "fp32",
                "model_grid_shape": grid.shape, "model_spacing": tuple(float(s) for s in sub.spacing),
                "roi_box": box, "sent": dict(zip(keys, sent)), "embeddings": dict(self.embeddings.stats),
                "patch_size": self.patch_size}
        if peak_gpu is not None:
            info["peak_gpu_bytes"] = int(peak_gpu)
        result = EngineResult(masks=masks, probabilities=probs, timings=timings, info=info, found=found,
                              reasons=reasons, prompts={p.text: p for p in resolved})
        if self.presence is not None:
            from ...engine.presence import apply_presence

            apply_presence(result, volume, self.presence, modality=modality, cropped=box is not None)
        return result

    @staticmethod
    def _to_source(logit: torch.Tensor, grid: VoxTellGrid, shape, where, inner) -> tuple[np.ndarray, np.ndarray]:
        """``(logit > 0, sigmoid(logit))`` of one prompt, written straight onto the source grid.

        The outputs are allocated in source order once; VoxTell's crop is written through a
        view of them in the model's ``[s, a, r]`` order (:meth:`VoxTellGrid.to_model`), so no
        full-size intermediate or copy is made. Outside the crop: 0 (VoxTell's mask is 0 there)."""
        mask = np.zeros(shape, dtype=bool)
        prob = np.zeros(shape, dtype=np.float32)
        sub_m, sub_p = (mask, prob) if where is None else (mask[where], prob[where])
        grid.to_model(sub_m)[inner] = (logit > 0).cpu().numpy()
        grid.to_model(sub_p)[inner] = torch.sigmoid(logit.float()).cpu().numpy()
        return mask, prob

    def run_logits(self, data: torch.Tensor, emb: np.ndarray, progress=None, cancel=None) -> torch.Tensor:
        """VoxTell's sliding window on preprocessed ``data``: ``(N, S, A, R)`` float16 logits."""
        from voxtell.inference.predictor import InferenceCancelled

        def on_patch(done: int, total: int) -> bool:
            if progress:
                progress("tiles", done, total)
            return not (cancel is not None and cancel.cancelled)

        e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).to(self.device)[None]
        try:
            return self.predictor.predict_sliding_window_return_logits(data, e, progress_callback=on_patch)
        except InferenceCancelled:
            raise CancelledError("Segmentation cancelled by the user.") from None


def _shifted(ijk_to_ras: np.ndarray, start) -> np.ndarray:
    m = np.array(ijk_to_ras, dtype=np.float64)
    m[:3, 3] = m[:3, :3] @ np.asarray(start, dtype=np.float64) + m[:3, 3]
    return m

