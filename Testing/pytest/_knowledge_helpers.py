"""Helpers for the knowledge-tree tests: Slicer's terminology files and SAT's term list."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def slicer_terminology(name: str) -> dict | None:
    """A terminology JSON shipped in PyPI trame-slicer, or None when it is not installed."""
    spec = importlib.util.find_spec("trame_slicer")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "resources" / "terminologies" / name
    return json.loads(p.read_text()) if p.is_file() else None


def sat_terms() -> list[str]:
    """SAT's 498 ``modality_term`` entries (SAT-DS terminology_list.json, shipped in Resources/models)."""
    p = REPO / "Resources" / "models" / "sat-terminology.json"
    return json.loads(p.read_text())["all"]
