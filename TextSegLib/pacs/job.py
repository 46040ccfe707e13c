"""One PACS action in a child process: ``python -m TextSegLib.pacs.job FOLDER``.

The Slicer module never runs network or DICOM writing on a Python thread (under PythonQt
the GUI thread holds the GIL while Qt idles, so such threads crawl). It writes ``FOLDER/job.json``
(and, to send, the masks in ``FOLDER/masks.npz``), starts this module and polls for
``FOLDER/result.json`` from its timer tick. Actions:

* ``test``: one QIDO-RS query; ``{"ok": true, "message": "Connected to ..."}``.
* ``send``: write the DICOM SEG to ``FOLDER/seg.dcm`` and STOW-RS it; the result names the file
  (the module inserts it into Slicer's DICOM database, then removes the folder).

Credentials come as ``TEXTSEG_DICOMWEB_TOKEN`` / ``TEXTSEG_DICOMWEB_USER`` in the environment
(never on the command line) or from the library's own config file. Every failure is one line
with the secret masked; the process exits 0 when it wrote a result.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import TextSegError

JOB, MASKS, RESULT, SEG = "job.json", "masks.npz", "result.json", "seg.dcm"


# -- the module's side: what it writes --------------------------------------------------
def _box(kji: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of a ``[k, j, i]`` mask (empty slices when it holds nothing)."""
    flat = kji.reshape(kji.shape[0], -1) if kji.flags.c_contiguous else None
    ks = np.flatnonzero(flat.any(axis=1) if flat is not None else kji.any(axis=(1, 2)))
    if ks.size == 0:
        return (slice(0, 0),) * 3
    sub = kji[ks[0]:ks[-1] + 1]
    js, is_ = np.flatnonzero(sub.any(axis=(0, 2))), np.flatnonzero(sub.any(axis=(0, 1)))
    return slice(ks[0], ks[-1] + 1), slice(js[0], js[-1] + 1), slice(is_[0], is_[-1] + 1)


def write_send_job(folder: str | os.PathLike, segmentation, source_files: list[str], url: str) -> Path:
    """Write a ``send`` job. Each mask is stored as the packed bits of its bounding box, read in
    ``[k, j, i]`` order (the memory order of masks read from MRML): no full-volume copy on the GUI thread."""
    folder = Path(folder)
    segments, arrays = [], {}
    for n, s in enumerate(segmentation):
        kji = np.asarray(s.mask, dtype=bool).transpose(2, 1, 0)
        box = _box(kji)
        arrays[f"m{n}"] = np.packbits(np.ascontiguousarray(kji[box]))
        segments.append({"name": s.name, "terminology": s.terminology, "color": list(s.color) if s.color else None,
                         "concept_id": s.concept_id, "meta": s.meta,
                         "box": [[int(b.start), int(b.stop)] for b in box]})
    np.savez(folder / MASKS, **arrays)
    job = {"action": "send", "url": url, "source_files": list(source_files),
           "shape": list(segmentation.shape), "ijk_to_ras": np.asarray(segmentation.ijk_to_ras).tolist(),
           "meta": segmentation.meta, "segments": segments}
    _write_json(folder / JOB, job)
    return folder / JOB


def write_test_job(folder: str | os.PathLike, url: str) -> Path:
    _write_json(Path(folder) / JOB, {"action": "test", "url": url})
    return Path(folder) / JOB


def read_result(folder: str | os.PathLike) -> dict | None:
    """The child's result, or None while it has not written one."""
    try:
        return json.loads((Path(folder) / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- the child's side -------------------------------------------------------------------------
def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _client(url: str):
    from . import PacsClient, resolve_settings

    return PacsClient(resolve_settings(url))


def _test(job: dict) -> dict:
    client = _client(job["url"])
    studies = client.find_studies(limit=1)
    cfg = client.settings
    auth = "bearer token" if cfg.token else (f"user {cfg.username}" if cfg.username else "no credentials")
    found = "has studies" if studies else "has no studies yet"
    return {"ok": True, "message": f"Connected to {cfg.url} (DICOMweb QIDO-RS answered, {auth}; the server {found})."}


def _segmentation(folder: Path, job: dict):
    from ..segmentation import Geometry, Segment, Segmentation

    shape = tuple(int(v) for v in job["shape"])
    seg = Segmentation(Geometry(shape, np.asarray(job["ijk_to_ras"], dtype=np.float64)))
    seg.meta = dict(job.get("meta") or {})
    with np.load(folder / MASKS) as packed:
        for n, s in enumerate(job["segments"]):
            box = tuple(slice(a, b) for a, b in s["box"])
            size = tuple(b.stop - b.start for b in box)
            kji = np.zeros(shape[::-1], dtype=bool)
            kji[box] = np.unpackbits(packed[f"m{n}"], count=int(np.prod(size))).astype(bool).reshape(size)
            mask = kji.transpose(2, 1, 0)
            seg.add(Segment(s["name"], mask, terminology=s.get("terminology") or "",
                            color=tuple(s["color"]) if s.get("color") else None,
                            concept_id=s.get("concept_id"), meta=s.get("meta") or {}), on_conflict="rename")
    return seg


def _send(folder: Path, job: dict) -> dict:
    from ..io.dicomseg import write_dicom_seg

    client = _client(job["url"])  # a bad URL fails before the SEG is written
    report = write_dicom_seg(_segmentation(folder, job), job["source_files"], folder / SEG)
    client.push([str(report.path)])
    return {"ok": True, "message": f"Sent {len(report.segments)} segment(s) to {job['url'].rstrip('/')}",
            "segments": report.segments, "seg_path": str(report.path)}


def one_line(message: str, secret: str = "") -> str:
    text = " ".join(str(message).split())
    return text.replace(secret, "***") if secret else text


def run(folder: str | os.PathLike) -> dict:
    """Do the job in ``folder`` and write its result (also returned)."""
    folder = Path(folder)
    secret = os.environ.get("TEXTSEG_DICOMWEB_TOKEN") or os.environ.get("TEXTSEG_DICOMWEB_USER", "").partition(":")[2]
    try:
        job = json.loads((folder / JOB).read_text(encoding="utf-8"))
        action = job.get("action")
        if action == "test":
            result = _test(job)
        elif action == "send":
            result = _send(folder, job)
        else:
            result = {"ok": False, "message": f"{folder / JOB}: unknown action {action!r}."}
    except TextSegError as exc:
        result = {"ok": False, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - one line for the status bar, never a traceback
        what = "connection test" if "job" in locals() and job.get("action") == "test" else "Send to PACS"
        url = job.get("url", "") if "job" in locals() else ""
        result = {"ok": False, "message": f"{url}: {what} failed ({type(exc).__name__}: {exc})."}
    result["message"] = one_line(result["message"], secret)
    _write_json(folder / RESULT, result)
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m TextSegLib.pacs.job FOLDER", file=sys.stderr)
        sys.exit(2)
    run(sys.argv[1])
