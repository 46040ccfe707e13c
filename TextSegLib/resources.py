"""Locate the data that ships with TextSeg (knowledge tree, model catalog,
bundled weights, sample scans).

Search order: ``$TEXTSEG_RESOURCES``; the ``Resources/`` folder beside the
``TextSegLib`` package (a source checkout, an editable install, or the Slicer
extension layout).
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import TextSegError

PACKAGE_DIR = Path(__file__).resolve().parent


def resources_dir() -> Path:
    env = os.environ.get("TEXTSEG_RESOURCES")
    candidates = [Path(env)] if env else []
    candidates += [PACKAGE_DIR.parent / "Resources", PACKAGE_DIR / "Resources"]
    for c in candidates:
        if c.is_dir():
            return c
    raise TextSegError(
        "TextSeg's Resources folder was not found (looked in: "
        + ", ".join(str(c) for c in candidates) + ").",
        "Install TextSeg from its source checkout (pip install -e .) or set TEXTSEG_RESOURCES.",
    )


def resource_path(*parts: str, must_exist: bool = True) -> Path:
    """Path of a shipped file, e.g. ``resource_path("knowledge", "tree.json.gz")``."""
    p = resources_dir().joinpath(*parts)
    if must_exist and not p.exists():
        raise TextSegError(
            f"Shipped resource {'/'.join(parts)} is missing from {resources_dir()}.",
            "Reinstall TextSeg or rebuild the resource (see the README).",
        )
    return p
