"""Issue 19 §7: ExtensionsIndex/TextSeg.json is a valid Slicer Extensions Index entry, consistent
with the top-level CMakeLists.txt, and every URL it implies points into this repository.

The schema is not vendored: its facts are written down here, from Slicer's
``Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json`` (Slicer main, commit a31a04c293,
also in v5.12.x; v5.10.0 has v1.0.1, the same minus ``dicom_support_rule``). The other checks
are those the Index's pull-request validator runs (Slicer/ExtensionsIndex
``scripts/check_description_files.py``): LF-only JSON, a known category, an https/git
``scm_url`` whose repository name starts with "Slicer" while the extension name does not, the
file named after CMake's ``project()``, icon and screenshot URLs in CMakeLists.txt that are PNG
images, a LICENSE file, a repository under 100 MB, and every build dependency an indexed
extension.
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from _module_helpers import ROOT

ENTRY = ROOT / "ExtensionsIndex" / "TextSeg.json"
SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"

#: slicer-extension-catalog-entry-schema-v1.0.2.json: required keys, additionalProperties false, property types
SCHEMA_REQUIRED = ("$schema", "category", "scm_url")
SCHEMA_PROPERTIES: dict[str, type] = {
    "$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
    "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool, "tier": int,
}
SCHEMA_SCM_TYPES = ("git", "local")
SCHEMA_TIER_RANGE = (1, 5)
#: check_description_files.py ACCEPTED_EXTENSION_CATEGORIES (the part a segmentation tool could use)
KNOWN_CATEGORIES = {"Segmentation", "Quantification", "Informatics", "Nuclear Medicine", "Radiotherapy"}
#: extensions listed in the Index (Slicer/ExtensionsIndex main, 07f1d1b2): PyTorch.json is there
INDEXED_DEPENDENCIES = {"PyTorch", "NNUNet", "SlicerRT", "PETDICOMExtension"}


def schema_errors(entry: dict) -> list[str]:
    """What the v1.0.2 schema rejects in ``entry`` ([] = valid)."""
    errors = [f"missing required {k!r}" for k in SCHEMA_REQUIRED if k not in entry]
    errors += [f"unknown property {k!r} (additionalProperties is false)" for k in entry if k not in SCHEMA_PROPERTIES]
    for key, value in entry.items():
        want = SCHEMA_PROPERTIES.get(key)
        if want is not None and (not isinstance(value, want) or (want is int and isinstance(value, bool))):
            errors.append(f"{key!r} must be {want.__name__}")
    if not all(isinstance(x, str) for x in entry.get("build_dependencies", [])):
        errors.append("build_dependencies items must be strings")
    if "scm_type" in entry and entry["scm_type"] not in SCHEMA_SCM_TYPES:
        errors.append(f"scm_type must be one of {SCHEMA_SCM_TYPES}")
    tier = entry.get("tier", 1)
    if isinstance(tier, int) and not SCHEMA_TIER_RANGE[0] <= tier <= SCHEMA_TIER_RANGE[1]:
        errors.append("tier must be 1..5")
    return errors


def cmake(name: str) -> str:
    text = (ROOT / "CMakeLists.txt").read_text()
    match = re.search(rf'set\s*\({name}\s*"([^"]+)"\s*\)', text)
    assert match, f"CMakeLists.txt sets no {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(ENTRY.read_text(encoding="utf-8"))


def test_entry_validates_against_the_schema(entry):
    assert schema_errors(entry) == []
    assert entry["$schema"] == SCHEMA_URL
    assert entry["build_dependencies"] == ["PyTorch"] and entry["category"] == "Segmentation"
    assert entry["tier"] == 1 and entry["scm_revision"] == "main" and entry["build_subdirectory"] == "."


def test_the_schema_facts_reject_bad_entries():
    assert "missing required 'scm_url'" in schema_errors({"$schema": SCHEMA_URL, "category": "Segmentation"})
    assert schema_errors({"$schema": SCHEMA_URL, "category": "Segmentation", "scm_url": "x", "tier": 7}) == ["tier must be 1..5"]
    assert any("additionalProperties" in e for e in schema_errors(
        {"$schema": SCHEMA_URL, "category": "S", "scm_url": "x", "homepage": "h"}))
    assert any("'tier' must be int" in e for e in schema_errors({"$schema": SCHEMA_URL, "category": "S", "scm_url": "x", "tier": True}))


def test_entry_passes_the_index_validator_checks(entry):
    assert b"\r" not in ENTRY.read_bytes()
    assert entry["category"] in KNOWN_CATEGORIES
    url = urlsplit(entry["scm_url"])
    assert url.scheme in ("https", "git") and url.netloc == "github.com"
    repo_name = Path(url.path).stem
    assert repo_name.startswith("Slicer") and not ENTRY.stem.lower().startswith("slicer")
    project = re.search(r"^project\((\w+)\)", (ROOT / "CMakeLists.txt").read_text(), re.M).group(1)
    assert ENTRY.stem == project == "TextSeg"
    assert set(entry["build_dependencies"]) <= INDEXED_DEPENDENCIES
    assert (ROOT / "LICENSE").is_file()


def test_entry_and_cmake_agree_and_urls_point_into_this_repository(entry):
    home = cmake("EXTENSION_HOMEPAGE")
    assert entry["scm_url"].removesuffix(".git") == home
    assert cmake("EXTENSION_CATEGORY") == entry["category"]
    assert cmake("EXTENSION_DEPENDS").split() == entry["build_dependencies"]
    owner_repo = urlsplit(home).path.strip("/")
    raw = f"https://raw.githubusercontent.com/{owner_repo}/{entry['scm_revision']}/"
    urls = [cmake("EXTENSION_ICONURL")] + cmake("EXTENSION_SCREENSHOTURLS").split()
    for url in urls:
        assert url.startswith(raw), f"{url} is not a raw URL of {owner_repo}@{entry['scm_revision']}"
        path = ROOT / url[len(raw):]
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    assert f"href='{home}'" in (ROOT / "TextSeg" / "TextSeg.py").read_text()


def test_repository_is_under_the_index_size_limit():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    total = sum((ROOT / f.decode()).stat().st_size for f in files if f and (ROOT / f.decode()).is_file())
    assert total < 100 * 1024 * 1024, f"{total / 2**20:.1f} MB"
