"""``load_bundled_engine()``: textseg-mini behind the Engine protocol.

Inference uses :class:`TextSegLib.engine.sat_engine.SATEngine` with the bundled model's own
query provider, grid (3 mm isotropic, no foreground crop) and normalisation
(:func:`preprocess.normalize`), i.e. the same resampling and normalisation code as training,
followed by the presence step (:mod:`TextSegLib.engine.presence`): per prompt, implausible
components are dropped (wrong side, wrong body region, islands of a one-body organ; this
replaces the former largest-component step) and a structure is reported "not found" when its
peak probability or volume is implausible, instead of a few invented mL.
"""
from __future__ import annotations

from pathlib import Path

from ...engine.presence import PresenceRules
from ...errors import ModelError
from ...resources import resource_path
from .ensemble import combine, member_folders
from .model import load_weights
from .preprocess import normalize
from .text import MiniQueryProvider

NAME = "textseg-mini"

#: Presence thresholds for textseg-mini (measured with benchmarks/bench_not_found.py).
PRESENCE = PresenceRules()


def _make_engine_class():
    from ...engine.sat_engine import SATEngine

    class BundledEngine(SATEngine):
        """SATEngine with the presence step on (see the module docstring)."""

        presence: PresenceRules | None = PRESENCE

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
    engine.query_provider = queries  # type: ignore[attr-defined]
    return engine
