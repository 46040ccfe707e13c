#!/usr/bin/env python
"""Build TextSeg's knowledge tree (``Resources/knowledge/tree.json.gz``) from real sources.

Run from the repository root (one command, reproducible)::

    python Resources/knowledge/build_tree.py

Sources (attributed in the output's ``sources`` field):

* 3D Slicer terminology files shipped in PyPI ``trame-slicer`` (Slicer General Anatomy list,
  DICOM master list, anatomic regions);
* DICOM context groups in ``pydicom.sr`` (CID 7150, 7151/7192, 244, 2, 4/4031, 7152-7170);
* TotalSegmentator 2.18.0 ``resources/totalsegmentator_snomed_mapping.csv`` (Apache-2.0),
  from the wheel, downloaded with ``pip download`` into the cache when missing;
* ``covale`` ``atlas_registry/registry.json`` (MIT) for brain regions, downloaded the same way;
* SAT-DS ``data/terminology_list.json`` (zhaoziheng/SAT-DS), shipped as ``Resources/models/sat-terminology.json``
  or ``--sat-terms``;
* hand-written tables beside this script (synonyms.tsv, lesions.tsv, sat_aliases.tsv,
  extra_structures.txt, code_synonyms.tsv, lesion_codes.tsv).

Cache folder: ``--cache`` or ``$TEXTSEG_BUILD_CACHE`` (default ``~/.cache/textseg-build``).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import tree_builder as bm  # noqa: E402
import tree_export  # noqa: E402


def fetch_wheel(dist: str, version: str | None, cache: Path) -> Path:
    """The wheel of ``dist`` in ``cache``; ``pip download --no-deps`` it when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"{dist}-{version or '*'}-*.whl"
    found = sorted(cache.glob(pattern))
    if not found:
        spec = f"{dist}=={version}" if version else dist
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        spec, "-d", str(cache)], check=True)
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip download of {dist} produced no wheel in {cache}")
    return found[-1]


def read_member(wheel: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith(suffix):
                return z.read(name)
    raise SystemExit(f"{wheel.name} has no member ending in {suffix}")


def slicer_terminology_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("trame_slicer")  # locate only: importing it needs trame
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("PyPI package trame-slicer is not installed (pip install trame-slicer)")
    d = Path(list(spec.submodule_search_locations)[0]) / "resources" / "terminologies"
    if not d.is_dir():
        raise SystemExit(f"trame-slicer terminology files not found in {d}")
    return d


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    import os

    ap.add_argument("--cache", type=Path, default=Path(os.environ.get(
        "TEXTSEG_BUILD_CACHE", Path.home() / ".cache" / "textseg-build")))
    ap.add_argument("--sat-terms", type=Path, default=REPO / "Resources" / "models" / "sat-terminology.json")
    ap.add_argument("--out", type=Path, default=HERE / "tree.json.gz")
    args = ap.parse_args(argv)
    if not args.sat_terms.is_file():
        raise SystemExit(f"SAT terminology list not found at {args.sat_terms}; pass --sat-terms PATH")

    term_dir = slicer_terminology_dir()
    ts_wheel = fetch_wheel("totalsegmentator", "2.18.0", args.cache)
    cov_wheel = fetch_wheel("covale", "0.1.4", args.cache)
    ts_csv = read_member(ts_wheel, "resources/totalsegmentator_snomed_mapping.csv").decode("utf-8")
    covale = json.loads(read_member(cov_wheel, "atlas_registry/registry.json"))

    b = bm.TreeBuilder()
    b.load_slicer(json.loads((term_dir / "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json").read_text()), "GA")
    b.load_slicer(json.loads((term_dir / "SegmentationCategoryTypeModifier-DICOM-Master.term.json").read_text()), "DM")
    b.load_anatomic_regions(json.loads((term_dir / "AnatomicRegionAndModifier-DICOM-Master.term.json").read_text()))
    b.load_pydicom()
    b.load_totalsegmentator(list(csv.DictReader(io.StringIO(ts_csv))))
    b.load_code_synonyms(HERE / "code_synonyms.tsv")
    b.add_numbered_structures()
    b.add_extra_structures(HERE / "extra_structures.txt")
    b.load_hand_synonyms(HERE / "synonyms.tsv")
    b.add_lesions(HERE / "lesions.tsv")
    b.add_coded_findings(HERE / "lesion_codes.tsv")
    b.load_covale(covale)
    b.load_sat(json.loads(args.sat_terms.read_text()), HERE / "sat_aliases.tsv")
    b.load_hand_synonyms(HERE / "synonyms.tsv", final=True)
    tree_export.finish(b)
    data = tree_export.export(b, sources=[
        {"name": "3D Slicer terminologies (via PyPI trame-slicer)", "files": [
            "SegmentationCategoryTypeModifier-SlicerGeneralAnatomy.term.json",
            "SegmentationCategoryTypeModifier-DICOM-Master.term.json",
            "AnatomicRegionAndModifier-DICOM-Master.term.json"]},
        {"name": "DICOM PS3.16 context groups via pydicom.sr", "version": _version("pydicom")},
        {"name": "TotalSegmentator totalsegmentator_snomed_mapping.csv", "version": ts_wheel.name,
         "license": "Apache-2.0"},
        {"name": "covale atlas_registry/registry.json", "version": cov_wheel.name, "license": "MIT"},
        {"name": "SAT-DS data/terminology_list.json (zhaoziheng/SAT-DS)", "file": args.sat_terms.name},
        {"name": "TextSeg hand-written tables", "files": ["synonyms.tsv", "lesions.tsv", "sat_aliases.tsv", "extra_structures.txt",
                                                    "code_synonyms.tsv", "lesion_codes.tsv"]},
    ])
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")
    args.out.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): "
          f"{len(data['concepts']['id'])} concepts, {len(data['names']['keys'])} names "
          f"({len(set(data['names']['keys']))} distinct search keys)")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
