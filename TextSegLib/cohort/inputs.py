"""Cohort inputs: the cases of a run, from a folder of scans or a CSV manifest.

A folder holds one case per NIfTI / NRRD / MetaImage file and one per sub-folder (a DICOM
series folder). A CSV manifest has the columns ``case_id`` and ``path`` (relative to the CSV's
folder or absolute) and optionally ``modality``, ``prompts`` (split like the prompt box:
commas, semicolons, new lines) and ``roi`` (``R1 A1 S1 R2 A2 S2`` in mm, RAS; separated by
spaces, commas or semicolons).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError
from ..io.volumes import READ_FORMATS, extension
from ..volume import normalize_modality

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MANIFEST_COLUMNS = ("case_id", "path", "modality", "prompts", "roi")


@dataclass(frozen=True)
class CaseSpec:
    """One case of a cohort: where its scan is and what (if anything) it overrides."""

    case_id: str
    path: str
    modality: str = ""
    prompts: tuple[str, ...] = ()
    roi: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    source: str = ""  # where the case was listed (the CSV row), for error messages

    def to_json(self) -> dict:
        return {"case_id": self.case_id, "path": self.path, "modality": self.modality,
                "prompts": list(self.prompts), "roi": [list(self.roi[0]), list(self.roi[1])] if self.roi else None}


@dataclass
class CaseList:
    """The cases of a run plus the folder entries that were not scans (reported, not run)."""

    cases: list[CaseSpec]
    ignored: list[str] = field(default_factory=list)


DICOMWEB_PREFIX = "dicomweb:"
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def case_id_for(path: Path) -> str:
    """A file-system-safe case id from a scan's file or folder name."""
    name = path.name
    ext = extension(path)
    if ext in READ_FORMATS and path.is_file():
        name = name[: -len(ext)]
    cid = _SAFE.sub("_", name).strip("._")
    return cid or "case"


def parse_roi(text: str, where: str = "--roi") -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """``"R1,A1,S1,R2,A2,S2"`` (any of ``, ; space``) -> ``(lo, hi)`` in RAS mm, or ``None`` when empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        v = [float(x) for x in re.split(r"[,;\s]+", text) if x]
    except ValueError:
        v = []
    if len(v) != 6:
        raise InputFileError(f"{where}: ROI {text!r} needs six numbers.",
                             "Write R1 A1 S1 R2 A2 S2 in millimetres (RAS).")
    lo = tuple(min(a, b) for a, b in zip(v[:3], v[3:]))
    hi = tuple(max(a, b) for a, b in zip(v[:3], v[3:]))
    return lo, hi  # type: ignore[return-value]


def _check_unique(cases: list[CaseSpec]) -> None:
    seen: dict[str, CaseSpec] = {}
    for c in cases:
        if c.case_id in seen:
            raise InputFileError(f"Case id {c.case_id!r} is used twice ({seen[c.case_id].path} and {c.path}).",
                                 "Give every case its own id (rename a file or fix the manifest).")
        seen[c.case_id] = c


def discover_folder(folder: str | Path) -> CaseList:
    """One case per scan file and per sub-folder of ``folder`` (sorted by name)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputFileError(f"{root}: no such folder.", "Pass a folder of scans or a CSV manifest.")
    cases, ignored = [], []
    for p in sorted(root.iterdir(), key=lambda q: q.name):
        if p.name.startswith("."):
            continue
        low = p.name.lower()
        if p.is_dir():
            cases.append(CaseSpec(case_id_for(p), str(p)))
        elif extension(p) in READ_FORMATS and not low.endswith(".seg.nrrd"):
            cases.append(CaseSpec(case_id_for(p), str(p)))
        else:
            ignored.append(p.name)
    if not cases:
        raise InputFileError(f"{root}: holds no scans (NIfTI, NRRD, MetaImage files or DICOM series folders).",
                             "Pass the folder that holds the scans, or a CSV manifest.")
    _check_unique(cases)
    return CaseList(cases, ignored)


def read_manifest_csv(path: str | Path) -> CaseList:
    """Cases from a CSV manifest (see the module docstring for its columns)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileError(f"{p}: no such file.", "Check the manifest path.")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{p.name}: not a readable CSV file ({exc}).", "Save it as UTF-8 CSV.") from None
    missing = [c for c in ("case_id", "path") if c not in header]
    if missing:
        raise InputFileError(f"{p.name}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'}).",
                             "The first row must name the columns case_id,path[,modality,prompts,roi].")
    unknown = [h for h in header if h not in MANIFEST_COLUMNS]
    if unknown:
        raise InputFileError(f"{p.name}: unknown column(s) {', '.join(unknown)}.",
                             f"Use only {', '.join(MANIFEST_COLUMNS)}.")
    from ..knowledge.prompts import split_prompts

    cases = []
    for n, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        where = f"{p.name} line {n}"
        cid, rel = row.get("case_id", ""), row.get("path", "")
        if not cid or not rel:
            raise InputFileError(f"{where}: case_id and path must not be empty.", "Fill in both or delete the row.")
        if _SAFE.search(cid) or cid.startswith("."):
            raise InputFileError(f"{where}: case_id {cid!r} has characters unsafe in a file name.",
                                 "Use letters, digits, '.', '_' and '-' only.")
        if rel.lower().startswith(DICOMWEB_PREFIX):  # a series on the run's DICOMweb server
            uid = rel[len(DICOMWEB_PREFIX):].strip()
            if not _UID.fullmatch(uid):
                raise InputFileError(f"{where}: {rel!r} is not dicomweb:SERIES_INSTANCE_UID.",
                                     "Write the series' UID after 'dicomweb:' (digits and dots).")
            scan = Path(DICOMWEB_PREFIX + uid)
        else:
            scan = Path(rel).expanduser()
            if not scan.is_absolute():
                scan = (p.parent / scan)
        mod = row.get("modality", "")
        try:
            mod = normalize_modality(mod) if mod else ""
        except Exception as exc:
            raise InputFileError(f"{where}: {exc}", "Use ct, mri or pet.") from None
        prompts = tuple(split_prompts(row.get("prompts", ""))) if row.get("prompts") else ()
        cases.append(CaseSpec(cid, str(scan), mod, prompts, parse_roi(row.get("roi", ""), where), where))
    if not cases:
        raise InputFileError(f"{p.name}: lists no cases.", "Add one row per scan under the header.")
    _check_unique(cases)
    return CaseList(cases)


def read_series_list(path: str | Path) -> CaseList:
    """Cases from a text file of DICOM series UIDs on the run's DICOMweb server (one per line,
    ``#`` comments); each case is named by its UID."""
    p = Path(path).expanduser()
    cases = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        uid = line.split("#", 1)[0].strip()
        if not uid:
            continue
        if not _UID.fullmatch(uid):
            raise InputFileError(f"{p.name} line {n}: {uid!r} is not a DICOM UID.",
                                 "List one SeriesInstanceUID (digits and dots) per line.")
        cases.append(CaseSpec(uid, DICOMWEB_PREFIX + uid, source=f"{p.name} line {n}"))
    if not cases:
        raise InputFileError(f"{p.name}: lists no series.", "Put one SeriesInstanceUID per line.")
    _check_unique(cases)
    return CaseList(cases)


def is_dicomweb(path: str) -> bool:
    return str(path).lower().startswith(DICOMWEB_PREFIX)


def load_cases(source: str | Path, dicomweb: str | None = None) -> CaseList:
    """A folder of scans, a CSV manifest (``.csv``), or with ``dicomweb`` (the server URL) a text
    file of series UIDs (``.txt``)."""
    p = Path(source).expanduser()
    if dicomweb and p.is_file() and p.suffix.lower() == ".txt":
        return read_series_list(p)
    if p.is_file() and p.suffix.lower() == ".csv":
        return read_manifest_csv(p)
    if p.is_dir():
        return discover_folder(p)
    if not p.exists():
        raise InputFileError(f"{p}: no such file or folder.", "Pass a folder of scans or a CSV manifest.")
    raise InputFileError(f"{p.name}: a cohort input must be a folder or a .csv manifest.",
                         "For one scan use `textseg segment`.")
