"""Case outputs: the pluggable export formats and the all-or-nothing case folder.

A case is written into ``<run>/.staging/<case>-<random>/`` and, once every file is there and
fsynced, renamed to ``<run>/cases/<case>/`` in one step, so ``cases/`` never holds half a case
(whatever kills the process, whenever). A format is a name and a writer; register another one
(DICOM SEG registers itself when :mod:`TextSegLib.io.dicomseg` exists) with :func:`register_format`.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import OutputPathError
from .manifest import fsync_dir

CASES, STAGING, TRASH = "cases", ".staging", ".trash"

#: writer(segmentation, volume, case_folder, case_id) -> files written
Writer = Callable[[object, object, Path, str], list[Path]]


@dataclass(frozen=True)
class OutputFormat:
    """One export format. ``available()`` returns ``None`` or why it cannot be used here."""

    name: str
    description: str
    write: Writer
    available: Callable[[], str | None] = lambda: None


FORMATS: dict[str, OutputFormat] = {}


def register_format(fmt: OutputFormat) -> None:
    """Add (or replace) an export format."""
    FORMATS[fmt.name] = fmt


def _write_seg_nrrd(seg, volume, folder: Path, case_id: str) -> list[Path]:
    from ..io import write_seg_nrrd

    return [write_seg_nrrd(seg, folder / f"{case_id}.seg.nrrd")]


def _write_nifti(seg, volume, folder: Path, case_id: str) -> list[Path]:
    from ..io import write_nifti_labels

    return list(write_nifti_labels(seg, folder / f"{case_id}.nii.gz"))


def _dicomseg_missing() -> str | None:
    try:
        from ..io import dicomseg  # noqa: F401
    except ImportError:
        return "the DICOM SEG writer (TextSegLib.io.dicomseg) is not part of this installation"
    return None


def _write_dicomseg(seg, volume, folder: Path, case_id: str, seg_type: str = "BINARY") -> list[Path]:
    from ..io.dicomseg import write_dicom_seg

    if not volume.meta.get("files") and not volume.meta.get("dicom_files"):
        return []  # not a DICOM series: DICOM SEG needs the source instances
    if not any(True for _ in seg):
        return []
    write_dicom_seg(seg, volume, folder / f"{case_id}.seg.dcm", segmentation_type=seg_type)
    return [folder / f"{case_id}.seg.dcm"]


register_format(OutputFormat("seg.nrrd", "Slicer segmentation (.seg.nrrd)", _write_seg_nrrd))
register_format(OutputFormat("nifti", "NIfTI label map(s) + labels CSV", _write_nifti))
register_format(OutputFormat("dicomseg", "DICOM SEG (DICOM series inputs only)", _write_dicomseg, _dicomseg_missing))

DEFAULT_FORMATS = ("seg.nrrd", "nifti")


def check_formats(names) -> list[str]:
    """The requested format names, checked (unknown or unavailable: one clear error)."""
    out = []
    for n in names:
        key = n.strip().lower().lstrip(".")
        key = {"nii": "nifti", "nii.gz": "nifti", "seg": "seg.nrrd", "nrrd": "seg.nrrd", "dcm": "dicomseg",
               "dicom": "dicomseg", "dicom-seg": "dicomseg"}.get(key, key)
        if key not in FORMATS:
            raise OutputPathError(f"Unknown output format {n!r}.", f"Use one of: {', '.join(FORMATS)}.")
        why = FORMATS[key].available()
        if why:
            raise OutputPathError(f"Output format {key!r} is not available: {why}.",
                                  f"Use {', '.join(k for k in FORMATS if not FORMATS[k].available())}.")
        if key not in out:
            out.append(key)
    return out


def sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class CaseFolder:
    """A case's staging folder; :meth:`commit` moves it into ``cases/`` in one rename."""

    def __init__(self, run_dir: Path, case_id: str):
        self.run_dir, self.case_id = Path(run_dir), case_id
        (self.run_dir / STAGING).mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / STAGING / f"{case_id}-{uuid.uuid4().hex[:12]}"
        self.path.mkdir()

    def checksums(self) -> dict[str, dict]:
        """``cases/<case>/<file>`` -> sha256 and size of every file staged (each fsynced)."""
        out = {}
        for f in sorted(self.path.iterdir()):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
                out[f"{CASES}/{self.case_id}/{f.name}"] = {"sha256": sha256(f), "bytes": f.stat().st_size}
        return out

    def commit(self) -> Path:
        """Replace ``cases/<case>`` by the staged folder (the old one, if any, goes to ``.trash``)."""
        fsync_dir(self.path)
        final = self.run_dir / CASES / self.case_id
        final.parent.mkdir(exist_ok=True)
        if final.exists():
            trash = self.run_dir / TRASH
            trash.mkdir(exist_ok=True)
            old = trash / f"{self.case_id}-{uuid.uuid4().hex[:12]}"
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(self.path, final)
        fsync_dir(final.parent)
        return final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def clean_partial(run_dir: Path) -> int:
    """Remove what an interrupted run left half-made (staging and trash folders, temp files)."""
    n = 0
    for name in (STAGING, TRASH):
        d = Path(run_dir) / name
        if d.is_dir():
            for e in d.iterdir():
                shutil.rmtree(e, ignore_errors=True) if e.is_dir() else e.unlink(missing_ok=True)
                n += 1
    for tmp in Path(run_dir).glob(".textseg-*"):
        tmp.unlink(missing_ok=True)
        n += 1
    return n


def verify_outputs(run_dir: Path, record: dict, checksum: bool = False) -> str | None:
    """``None`` when every output a ``done`` record lists is there with its size (and, with
    ``checksum``, its sha256); else what is wrong."""
    outs = record.get("outputs") or {}
    if not outs:
        return "the manifest lists no output files"
    for rel, meta in outs.items():
        f = Path(run_dir) / rel
        try:
            size = f.stat().st_size
        except OSError:
            return f"{rel} is missing"
        if size != meta.get("bytes"):
            return f"{rel} has {size} bytes, the manifest says {meta.get('bytes')}"
        if checksum and sha256(f) != meta.get("sha256"):
            return f"{rel} does not match its checksum"
    return None
