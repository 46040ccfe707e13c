"""Cohort runs on the fixture scans plus broken cases, with the bundled model (real inference)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _cohort_helpers import DATA, broken_cases, dicom_roi, good_cases, textseg, write_manifest

pytestmark = pytest.mark.slow  # ~1 min on 2 busy cores: one real cohort, re-run three ways

PROMPTS = ["liver", "spleen"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch

    root = tmp_path_factory.mktemp("cohort")
    good = good_cases(root / "scans")
    bad = broken_cases(root / "scans")
    rows = [{"case_id": k, "path": str(p)} for k, p in {**good, **bad}.items()]
    rows.append({"case_id": "ct_dicom", "path": str(DATA / "totalsegmentator" / "example_ct_dicom"),
                 "modality": "CT", "roi": dicom_roi()})
    manifest = write_manifest(root / "cohort.csv", rows)
    cfg = BatchConfig(str(manifest), str(root / "run"), PROMPTS, EngineSpec("textseg-mini", device="cpu", threads=1),
                      progress=False)
    summary = run_batch(cfg, echo=lambda s: None)
    return {"root": root, "run": root / "run", "manifest": manifest, "summary": summary, "cfg": cfg,
            "good": [*good, "ct_dicom"], "bad": list(bad)}


def _latest(run: Path) -> dict:
    from TextSegLib.cohort.manifest import read_manifest

    return read_manifest(run).cases


def test_good_cases_exported_in_every_format_and_bad_ones_recorded(cohort):
    from TextSegLib.io import read_seg_nrrd

    s, run = cohort["summary"], cohort["run"]
    assert (s.total, s.done, s.failed, s.not_run, s.exit_code) == (7, 4, 3, 0, 1)
    recs = _latest(run)
    for cid in cohort["good"]:
        assert recs[cid]["state"] == "done", recs[cid]
        folder = run / "cases" / cid
        seg = read_seg_nrrd(folder / f"{cid}.seg.nrrd")
        assert [x.name for x in seg] == ["Liver", "Spleen"][: len(seg)] and len(seg) >= 1
        assert (folder / f"{cid}.nii.gz").stat().st_size > 0
        labels = (folder / f"{cid}_labels.csv").read_text()
        assert "Liver" in labels
        assert (folder / "qc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for rel, meta in recs[cid]["outputs"].items():  # checksums in the manifest match the files
            from TextSegLib.cohort.outputs import sha256

            assert sha256(run / rel) == meta["sha256"]
        assert recs[cid]["model"] == "textseg-mini" and recs[cid]["model_version"]
    reasons = {cid: recs[cid]["error"] for cid in cohort["bad"]}
    assert all(recs[c]["state"] == "failed" for c in cohort["bad"])
    assert "truncated" in reasons["corrupt"]
    assert "2D image" in reasons["flat_2d"]
    assert "2 series" in reasons["two_series"]
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    assert not (run / "cases" / "corrupt").exists()
    assert not any((run / ".staging").iterdir())


def test_measurements_equal_a_direct_computation(cohort):
    import pyarrow.parquet as pq

    from TextSegLib.io import read_seg_nrrd, read_volume
    from TextSegLib.measurements import measure

    run = cohort["run"]
    table = pq.read_table(run / "measurements.parquet").to_pylist()
    csv_lines = (run / "measurements.csv").read_text().strip().splitlines()
    assert len(csv_lines) == len(table) + 1 == 1 + 2 * len(cohort["good"])
    recs = _latest(run)
    checked = 0
    for row in table:
        if not row["found"]:
            assert row["voxels"] == 0 and row["volume_ml"] == 0.0
            continue
        cid = row["case_id"]
        seg = read_seg_nrrd(run / "cases" / cid / f"{cid}.seg.nrrd")
        image = read_volume(recs[cid]["path"], modality=recs[cid]["modality"])
        m = measure(seg[row["structure"]].mask, image, name=row["structure"])
        assert row["voxels"] == m.voxels
        for k in ("volume_ml", "mean", "std", "min", "max"):
            assert row[k] == pytest.approx(getattr(m, k), rel=1e-9, abs=1e-9), k
        assert [row[f"centroid_{a}"] for a in "ras"] == pytest.approx(list(m.centroid_ras))
        assert [row[f"bbox_{a}_min"] for a in "ras"] == pytest.approx(list(m.bbox_ras[0]))
        assert [row[f"p{p}"] for p in (5, 50, 95)] == pytest.approx([m.percentiles[p] for p in (5, 50, 95)])
        assert 0.5 <= row["mean_probability"] <= 1.0
        checked += 1
    assert checked >= 4
    summary = (run / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("structure,cases,found") and len(summary) == 3


def test_rerun_skips_done_cases_retry_failed_and_force(cohort):
    from TextSegLib.cohort import run_batch
    from dataclasses import replace

    run = cohort["run"]
    before = (run / "manifest.jsonl").read_text().splitlines()
    seg = run / "cases" / "ct_abdomen" / "ct_abdomen.seg.nrrd"
    mtime = seg.stat().st_mtime_ns
    again = run_batch(replace(cohort["cfg"]), echo=lambda s: None)
    assert (again.ran, again.already_done, again.failed) == (0, 4, 3)
    assert seg.stat().st_mtime_ns == mtime
    assert (run / "manifest.jsonl").read_text().splitlines() == before  # nothing appended when nothing runs
    retried = run_batch(replace(cohort["cfg"], retry_failed=True), echo=lambda s: None)
    assert (retried.ran, retried.failed) == (3, 3)
    assert _latest(run)["corrupt"]["attempt"] == 2
    # a done case whose file vanished is noticed and redone
    seg.unlink()
    fixed = run_batch(replace(cohort["cfg"]), echo=lambda s: None)
    assert fixed.ran == 1 and seg.is_file()


def test_changed_prompts_refuse_the_run_folder(cohort):
    from dataclasses import replace

    from TextSegLib.cohort import run_batch
    from TextSegLib.errors import OutputPathError

    with pytest.raises(OutputPathError, match="other settings"):
        run_batch(replace(cohort["cfg"], prompts=["liver"]), echo=lambda s: None)


def test_unresolvable_prompt_stops_before_any_case(tmp_path):
    scans = tmp_path / "scans"
    good_cases(scans)
    r = textseg("batch", str(scans), "-o", str(tmp_path / "run"), "-p", "liver", "-p", "flux capacitor",
                "--device", "cpu", "--quiet")
    assert r.returncode == 2, r.stderr
    assert "flux capacitor" in r.stderr and "Traceback" not in r.stderr
    lines = (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()
    assert not [ln for ln in lines if '"kind":"case"' in ln]
    assert not (tmp_path / "run" / "cases").exists()


def test_prompt_the_model_lacks_for_a_guessed_modality_is_a_not_found_row(tmp_path):
    """textseg-mini has no 'left lung' for MRI: an MR case (modality guessed) reports it as not
    found with the reason; the run warns up front."""
    import pyarrow.parquet as pq

    from TextSegLib.cohort import BatchConfig, EngineSpec, run_batch

    scans = tmp_path / "scans"
    good = good_cases(scans)
    for k in ("ct_abdomen", "ct_chest"):
        good[k].unlink()
    said = []
    s = run_batch(BatchConfig(str(scans), str(tmp_path / "run"), ["liver", "left lung"],
                              EngineSpec("textseg-mini", device="cpu", threads=1), progress=False), echo=said.append)
    assert (s.done, s.failed) == (1, 0)
    assert any("left lung" in w and "MRI" in w for w in said)
    rows = {r["structure"]: r for r in pq.read_table(tmp_path / "run" / "measurements.parquet").to_pylist()}
    assert rows["left lung"]["found"] is False and "MRI" in rows["left lung"]["reason"]
    assert rows["left lung"]["voxels"] == 0 and rows["left lung"]["mean"] is None
    assert rows["Liver"]["found"] is True
