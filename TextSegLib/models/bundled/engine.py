"""``load_bundled_engine()``: textseg-mini behind the Engine protocol.

Inference uses :class:`TextSegLib.engine.sat_engine.SATEngine` (plus a
largest-connected-component step for single organs) with the
bundled model's own query provider, grid (3 mm isotropic, no foreground
crop) and normalisation (:func:`preprocess.normalize`), i.e. the same
resampling and normalisation code as training.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...errors import ModelError
from ...resources import resource_path
from .ensemble import combine, member_folders
from .model import load_weights
from .preprocess import normalize
from .labels import prompt_forms
from .text import MiniQueryProvider, normalize_prompt

NAME = "textseg-mini"

#: Concepts that are one connected structure: only the largest component is kept.
SINGLE_COMPONENT = frozenset({
    "liver", "spleen", "left kidney", "right kidney", "stomach", "gallbladder", "pancreas",
    "heart", "aorta", "urinary bladder", "left lung", "right lung", "body", "esophagus",
    "trachea", "inferior vena cava", "sacrum", "brain",
})


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (int(np.argmax(sizes)) + 1)


def _make_engine_class():
    from ...engine.sat_engine import SATEngine

    class BundledEngine(SATEngine):
        """SATEngine + one post-processing step: structures that are a single connected
        organ keep only their largest connected component (on the source grid)."""

        concept_of: dict[str, str] = {}

        def segment(self, volume, prompts, **kwargs):
            res = super().segment(volume, prompts, **kwargs)
            t = time.perf_counter()
            kept = []
            for text, mask in res.masks.items():
                rp = res.prompts.get(text)
                concept = self.concept_of.get(normalize_prompt(rp.term if rp is not None else text))
                if concept in SINGLE_COMPONENT and mask.any():
                    res.masks[text] = _largest_component(mask)
                    kept.append(text)
            res.timings["largest_component"] = time.perf_counter() - t
            res.info["largest_component"] = kept
            return res

    return BundledEngine


def model_dir() -> Path:
    """The shipped model folder (``Resources/models/textseg-mini``)."""
    return resource_path("models", NAME)


def load_bundled_engine(folder: str | Path | None = None, *, device: str = "cpu",
                        use_tree: bool = True, threads: int | None = None):
    """A ready :class:`SATEngine` running textseg-mini (CPU by default).

    ``folder`` overrides the model folder (e.g. the output of ``textseg train``, or a
    folder with ``ensemble.json`` listing several trained members, see :mod:`.ensemble`);
    ``use_tree=False`` sends every prompt not in the term list straight to MiniLM
    instead of first mapping it to a known term through the knowledge tree.
    """
    import torch

    from ...engine.preprocess import PreprocessConfig
    from ...engine.sat_engine import InferenceConfig

    if threads:
        torch.set_num_threads(int(threads))
    path = Path(folder) if folder is not None else model_dir()
    if not path.is_dir():
        raise ModelError(f"textseg-mini model folder {path} does not exist.",
                         "Pass the folder written by `textseg train --out ...`.")
    loaded = [load_weights(p) for p in member_folders(path)]
    image_model, head = combine([m for m, _ in loaded], [e for _, e in loaded])
    model, term_emb = loaded[0]
    cfg = model.config
    queries = MiniQueryProvider(head, cfg.terms, term_emb, cfg.concepts, use_tree=use_tree)
    s = float(cfg.spacing)
    pre = PreprocessConfig(spacing=(s, s, s), crop_foreground=False, normaliser=normalize)
    inf = InferenceConfig(preprocess=pre, patch_size=tuple(int(v) for v in cfg.sat["patch_size"]),
                          in_channels=int(cfg.sat["in_channels"]), threshold=float(cfg.threshold),
                          device=device, precision="fp32")
    cls = _make_engine_class()
    engine = cls(image_model, queries, inf, name=NAME, vocabulary=cfg.concepts)
    concepts = {c for v in cfg.concepts.values() for c in v}
    engine.concept_of = {normalize_prompt(f): c for c in concepts for f in prompt_forms(c)}
    engine.query_provider = queries  # type: ignore[attr-defined]
    return engine
