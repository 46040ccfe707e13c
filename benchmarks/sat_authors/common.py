"""Pure helpers of bench_sat_vs_authors.py, importable from both sides' interpreters.

Only the standard library and numpy: this file is imported by TextSeg's venv (the parent, the
TextSeg child) and by the authors' venv (MONAI 1.1.0, numpy 1.x), so it must not import
TextSegLib or torch.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

#: the authors' repository and the commit the parity fixtures were made with
AUTHORS_URL = "https://github.com/zhaoziheng/SAT"
AUTHORS_COMMIT = "5676be5"
#: packages of the authors' venv (README of 5676be5: monai 1.1.0, nibabel 4.0.2, einops 0.6.1,
#: positional_encodings 6.0.1); numpy 1.x because nibabel 4.0.2 uses ``np.sctypes``, and
#: pandas < 3 because ``evaluate/inference_engine.py`` imports pandas (pandas 3 needs numpy 2)
AUTHORS_PACKAGES = ("monai==1.1.0", "nibabel==4.0.2", "einops==0.6.1", "positional_encodings==6.0.1",
                    "numpy==1.26.4", "pandas==2.2.3", "pytz", "tzdata")
QUERY_DIM = 768  # SAT-Nano's query width


def query_embeddings(terms: Sequence[str], modality: str = "ct", dim: int = QUERY_DIM) -> np.ndarray:
    """``(N, dim)`` float32 query rows, one per term, the same on both sides.

    Seeded by CRC-32 of ``modality:term`` (standard normal): a stand-in for the text tower's
    output, so that neither side needs the HF tokenizer (not available offline)."""
    rows = [np.random.default_rng(zlib.crc32(f"{modality}:{t.lower()}".encode())).standard_normal(dim)
            for t in terms]
    return np.stack(rows).astype(np.float32)


def parity(ours: np.ndarray, theirs: np.ndarray, threshold: float = 0.5, near: float = 0.01) -> dict:
    """Max probability difference and mask disagreement of two ``(N, X, Y, Z)`` probability maps.

    Masks are ``prob > threshold`` (the authors' rule). ``mask_differ_pct`` is the share of the
    union of both masks' voxels where they disagree (0 when both are empty);
    ``near_threshold_voxels`` counts the authors' voxels within ``near`` of the threshold."""
    a = np.asarray(ours, dtype=np.float32)
    b = np.asarray(theirs, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"probability maps differ in shape: {a.shape} against {b.shape}")
    ma, mb = a > threshold, b > threshold
    differ = int(np.count_nonzero(ma != mb))
    union = int(np.count_nonzero(ma | mb))
    per = [float(np.abs(a[i] - b[i]).max()) if a[i].size else 0.0 for i in range(a.shape[0])]
    return {"max_prob_diff": max(per, default=0.0), "max_prob_diff_per_prompt": per,
            "mask_voxels_ours": int(ma.sum()), "mask_voxels_theirs": int(mb.sum()),
            "mask_voxels_differ": differ,
            # how many voxels a small difference could flip: the mask test is only as strong as this
            "near_threshold_voxels": int(np.count_nonzero(np.abs(b - threshold) < near)),
            "mask_differ_pct": 100.0 * differ / union if union else 0.0,
            "grid_voxels": int(a.size),
            "mask_differ_pct_of_grid": 100.0 * differ / a.size if a.size else 0.0}


def machine() -> dict:
    """CPU model, logical cores and load average (Linux /proc where present)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        load = ()
    return {"cpu": model, "cores": os.cpu_count(), "load": load, "python": platform.python_version()}


def summarise(runs: Sequence[dict]) -> dict:
    """Median and range of the figures of one side's runs (each a child's result dict)."""
    out: dict = {"runs": len(runs)}
    for key in ("process_s", "pipeline_s", "tile_s", "peak_rss_gib", "tiles_run", "tiles_total"):
        vals = [float(r[key]) for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def ratio_line(ours: dict, theirs: dict, key: str) -> str:
    """``x0.42`` for the medians of ``key`` (TextSeg over the authors), or ``n/a``."""
    try:
        return f"x{ours[key]['median'] / theirs[key]['median']:.2f}"
    except (KeyError, ZeroDivisionError):
        return "n/a"


def child_result(line_source: str) -> dict:
    """The last JSON line a child printed (its result), or a clear error."""
    for line in reversed(line_source.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("the child printed no result line")
