"""The shipped tree is exactly what the build script makes from its sources."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from _knowledge_helpers import REPO, sat_terms, slicer_terminology

KDIR = REPO / "Resources" / "knowledge"


def _cache() -> Path:
    return Path(os.environ.get("TEXTSEG_BUILD_CACHE", Path.home() / ".cache" / "textseg-build"))


def test_rebuild_is_byte_identical(tmp_path):
    cache = _cache()
    if not (list(cache.glob("totalsegmentator-2.18.0-*.whl")) and list(cache.glob("covale-0.1.4-*.whl"))):
        pytest.skip(f"source wheels not cached in {cache} (the build downloads them; tests stay offline)")
    if sat_terms() is None or slicer_terminology("SegmentationCategoryTypeModifier-DICOM-Master.term.json") is None:
        pytest.skip("SAT terminology list or trame-slicer terminology files not available")
    sys.path.insert(0, str(KDIR))
    try:
        import build_tree
    finally:
        sys.path.remove(str(KDIR))
    out = tmp_path / "tree.json.gz"
    assert build_tree.main(["--cache", str(cache), "--out", str(out)]) == 0
    assert out.read_bytes() == (KDIR / "tree.json.gz").read_bytes(), \
        "Resources/knowledge/tree.json.gz is stale: run python Resources/knowledge/build_tree.py"


def test_hand_tables_are_well_formed():
    for name, cols in (("synonyms.tsv", 3), ("lesions.tsv", 3), ("sat_aliases.tsv", 2)):
        for i, line in enumerate((KDIR / name).read_text().splitlines(), 1):
            if line.strip() and not line.startswith("#"):
                assert len(line.split("\t")) == cols, f"{name}:{i}: {line!r}"
