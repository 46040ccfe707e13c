"""Cohort measurement tables: ``measurements.csv`` / ``.parquet`` (one row per case x structure)
and ``summary.csv`` (one row per structure), from the ``measurements.json`` of every done case.

Volume outliers: a found structure whose volume lies more than 3 scaled MADs
(1.4826 x median absolute deviation, i.e. about 3 standard deviations for normal data) from
that structure's median over the cohort (needs at least 5 cases with it found).

``state`` is the three-state verdict ("found", "uncertain": kept, a reviewer should look, "not
found") and ``presence_probability`` the presence step's probability; ``summary.csv`` counts the
uncertain ones (they count as found too).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..measurements import PERCENTILES, verdict
from .outputs import CASES
from .worker import MEASUREMENTS_JSON

COLUMNS = (["case_id", "structure", "prompt", "concept_id", "modality", "found", "reason", "voxels", "volume_ml",
            "mean", "std", "min", "max"] + [f"p{p}" for p in PERCENTILES]
           + [f"centroid_{a}" for a in "ras"] + [f"bbox_{a}_{e}" for a in "ras" for e in ("min", "max")]
           + ["mean_probability", "outlier", "state", "presence_probability"])
SUMMARY_COLUMNS = ["structure", "cases", "found", "not_found", "volume_ml_mean", "volume_ml_std", "volume_ml_median",
                   "volume_ml_min", "volume_ml_max", "volume_ml_mad", "outliers", "mean_intensity_median", "uncertain"]
MIN_CASES_FOR_OUTLIERS = 5
MAD_LIMIT = 3.0


def row_state(row: dict) -> str:
    """A row's three-state verdict; a row of a run from before the uncertain state: from ``found``."""
    return verdict(row.get("state"), row.get("found"))


def case_rows(run_dir: Path, case_id: str) -> tuple[list[dict], dict]:
    """The measurement rows and structure colours a done case wrote."""
    p = Path(run_dir) / CASES / case_id / MEASUREMENTS_JSON
    data = json.loads(p.read_text())
    return data.get("rows", []), data.get("colors", {})


def mark_outliers(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """Set ``row['outlier']`` on every row; returns structure -> (median, scaled MAD)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        r["outlier"] = False
        if r.get("found"):
            by.setdefault(r["structure"], []).append(r)
    stats = {}
    for name, rs in by.items():
        v = np.array([float(r["volume_ml"]) for r in rs])
        med = float(np.median(v))
        mad = 1.4826 * float(np.median(np.abs(v - med)))
        stats[name] = (med, mad)
        if len(rs) >= MIN_CASES_FOR_OUTLIERS and mad > 0:
            for r, x in zip(rs, v):
                r["outlier"] = bool(abs(x - med) > MAD_LIMIT * mad)
    return stats


def summarize(rows: Sequence[dict]) -> list[dict]:
    """One row per structure (in first-seen order) over the cohort."""
    order: dict[str, list[dict]] = {}
    for r in rows:
        order.setdefault(r["structure"], []).append(r)
    out = []
    for name, rs in order.items():
        found = [r for r in rs if r.get("found")]
        v = np.array([float(r["volume_ml"]) for r in found]) if found else np.array([])
        means = [float(r["mean"]) for r in found if r.get("mean") is not None]
        med = float(np.median(v)) if v.size else None
        out.append({"structure": name, "cases": len(rs), "found": len(found), "not_found": len(rs) - len(found),
                    "volume_ml_mean": float(v.mean()) if v.size else None,
                    "volume_ml_std": float(v.std(ddof=1)) if v.size > 1 else None,
                    "volume_ml_median": med, "volume_ml_min": float(v.min()) if v.size else None,
                    "volume_ml_max": float(v.max()) if v.size else None,
                    "volume_ml_mad": float(np.median(np.abs(v - med))) if v.size else None,
                    "outliers": sum(1 for r in found if r.get("outlier")),
                    "mean_intensity_median": float(np.median(means)) if means else None,
                    "uncertain": sum(1 for r in found if row_state(r) == "uncertain")})
    return out


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(round(v, 6))
    return str(v)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it onto ``path``."""
    from ..io.volumes import write_atomically

    return write_atomically(path, lambda tmp: Path(tmp).write_bytes(data), path.suffix)


def write_csv(path: Path, rows: Iterable[dict], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(row_state(r) if c == "state" else r.get(c)) for c in columns])
    return atomic_write_bytes(Path(path), buf.getvalue().encode())


def write_parquet(path: Path, rows: Sequence[dict]) -> Path | None:
    """``measurements.parquet`` with typed columns (``None`` when pyarrow is not installed)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    text = {"case_id", "structure", "prompt", "concept_id", "modality", "reason", "state"}
    fields = []
    for c in COLUMNS:
        t = pa.string() if c in text else pa.bool_() if c in ("found", "outlier") else \
            pa.int64() if c == "voxels" else pa.float64()
        fields.append(pa.field(c, t))
    schema = pa.schema(fields)
    table = pa.table({c: [row_state(r) if c == "state" else r.get(c) for r in rows] for c in COLUMNS}, schema=schema)
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return atomic_write_bytes(Path(path), buf.getvalue().to_pybytes())


def write_tables(run_dir: Path, rows: list[dict]) -> list[Path]:
    """measurements.csv, measurements.parquet and summary.csv in the run folder."""
    run_dir = Path(run_dir)
    out = [write_csv(run_dir / "measurements.csv", rows, COLUMNS)]
    pq = write_parquet(run_dir / "measurements.parquet", rows)
    if pq is not None:
        out.append(pq)
    out.append(write_csv(run_dir / "summary.csv", summarize(rows), SUMMARY_COLUMNS))
    return out
