"""Cohort building blocks without a model: inputs, manifest, prompt planning, tables, formats."""
from __future__ import annotations

import json
import os

import pytest

from TextSegLib.errors import InputFileError, OutputPathError, TerminologyError


def test_folder_cases_and_ids(tmp_path):
    from TextSegLib.cohort.inputs import discover_folder

    (tmp_path / "a b.nii.gz").write_bytes(b"x")
    (tmp_path / "c.nrrd").write_bytes(b"x")
    (tmp_path / "c.seg.nrrd").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "series1").mkdir()
    got = discover_folder(tmp_path)
    assert [c.case_id for c in got.cases] == ["a_b", "c", "series1"]
    assert got.ignored == ["c.seg.nrrd", "notes.txt"]
    (tmp_path / "c.nii").write_bytes(b"x")
    with pytest.raises(InputFileError, match="used twice"):
        discover_folder(tmp_path)


def test_manifest_csv_columns_and_errors(tmp_path):
    from TextSegLib.cohort.inputs import read_manifest_csv

    p = tmp_path / "m.csv"
    p.write_text('case_id,path,modality,prompts,roi\nA,x.nii.gz,MR,"liver; spleen","0 0 0 10 -10 5"\n')
    (c,) = read_manifest_csv(p).cases
    assert (c.case_id, c.modality, c.prompts) == ("A", "mri", ("liver", "spleen"))
    assert c.roi == ((0, -10, 0), (10, 0, 5)) and c.path == str(tmp_path / "x.nii.gz")
    p.write_text("case,path\nA,x\n")
    with pytest.raises(InputFileError, match="missing column"):
        read_manifest_csv(p)
    p.write_text("case_id,path,roi\nA,x,1 2 3\n")
    with pytest.raises(InputFileError, match="line 2.*six numbers"):
        read_manifest_csv(p)
    p.write_text("case_id,path\n../A,x\n")
    with pytest.raises(InputFileError, match="unsafe"):
        read_manifest_csv(p)


def test_manifest_survives_a_cut_last_line_and_locks(tmp_path):
    from TextSegLib.cohort.manifest import ManifestWriter, read_manifest

    with ManifestWriter(tmp_path) as w:
        w.append({"kind": "case", "case_id": "a", "state": "done"})
        with pytest.raises(OutputPathError, match="another"):
            ManifestWriter(tmp_path)
    with open(tmp_path / "manifest.jsonl", "ab") as fh:
        fh.write(b'{"kind":"case","case_id":"b","sta')  # SIGKILL mid-write
    st = read_manifest(tmp_path)
    assert st.cases["a"]["state"] == "done" and "b" not in st.cases and st.bad_lines == 1
    with ManifestWriter(tmp_path) as w:
        w.append({"kind": "case", "case_id": "b", "state": "failed"})
    st = read_manifest(tmp_path)
    assert st.state("b") == "failed" and st.bad_lines == 1


def _facts():
    from TextSegLib.cohort.plan import EngineFacts

    return EngineFacts("mini", False, ("ct", "mri"), {"ct": ["liver", "left lung", "spleen"], "mri": ["liver", "spleen"]})


def test_prompt_plan_per_modality():
    from TextSegLib.cohort.inputs import CaseSpec
    from TextSegLib.cohort.plan import plan_tables

    warnings = []
    cases = [CaseSpec("a", "a.nii"), CaseSpec("b", "b.nii", modality="ct")]
    tables = plan_tables(cases, ["liver", "left lung"], "", _facts(), warn=warnings.append)
    t = tables[()]
    assert [p.term for p in t.prompts["ct"]] == ["liver", "left lung"]
    assert [p.term for p in t.prompts["mri"]] == ["liver"] and "left lung" in t.skipped["mri"]
    assert warnings and "MRI" in warnings[0]
    with pytest.raises(TerminologyError, match="flux"):
        plan_tables(cases, ["liver", "flux capacitor"], "", _facts())
    with pytest.raises(TerminologyError, match="PET"):  # an explicit modality the model does not know
        plan_tables([CaseSpec("c", "c.nii", modality="pet")], ["liver"], "", _facts())
    with pytest.raises(TerminologyError):  # explicit MRI: a prompt it cannot do stops the run
        plan_tables([CaseSpec("c", "c.nii")], ["left lung"], "mri", _facts())


def test_outliers_beyond_three_mad():
    from TextSegLib.cohort.tables import mark_outliers, summarize

    rows = [{"case_id": str(i), "structure": "Liver", "found": True, "volume_ml": v, "mean": 50.0}
            for i, v in enumerate([1500, 1510, 1490, 1520, 1480, 1505, 4000])]
    rows.append({"case_id": "x", "structure": "Liver", "found": False, "volume_ml": 0.0})
    mark_outliers(rows)
    assert [r["outlier"] for r in rows] == [False] * 6 + [True, False]
    (s,) = summarize(rows)
    assert (s["cases"], s["found"], s["not_found"], s["outliers"], s["volume_ml_median"]) == (8, 7, 1, 1, 1505.0)


def test_formats_checked_up_front():
    from TextSegLib.cohort.outputs import check_formats

    assert check_formats(["seg.nrrd", "nii.gz", "nifti"]) == ["seg.nrrd", "nifti"]
    with pytest.raises(OutputPathError, match="Unknown output format"):
        check_formats(["stl"])
    try:
        import TextSegLib.io.dicomseg  # noqa: F401
    except ImportError:
        with pytest.raises(OutputPathError, match="not available"):
            check_formats(["dicomseg"])


def test_case_folder_is_all_or_nothing(tmp_path):
    from TextSegLib.cohort.outputs import CaseFolder, clean_partial, verify_outputs

    f = CaseFolder(tmp_path, "c1")
    (f.path / "a.txt").write_text("one")
    assert not (tmp_path / "cases" / "c1").exists()
    sums = f.checksums()
    f.commit()
    assert (tmp_path / "cases" / "c1" / "a.txt").read_text() == "one"
    rec = {"outputs": sums}
    assert verify_outputs(tmp_path, rec, checksum=True) is None
    (tmp_path / "cases" / "c1" / "a.txt").write_text("two")
    assert "checksum" in verify_outputs(tmp_path, rec, checksum=True)
    g = CaseFolder(tmp_path, "c2")  # left half-made by a crash
    (g.path / "x").write_text("partial")
    assert clean_partial(tmp_path) == 1 and not any((tmp_path / ".staging").iterdir())


def test_detached_batch_runs_on_and_reports_progress(tmp_path):
    import time

    from _cohort_helpers import broken_cases

    from TextSegLib.cohort.detached import read_progress, start_batch

    scans = broken_cases(tmp_path / "scans")
    run = tmp_path / "run"
    pid = start_batch(tmp_path / "scans", run, ["liver"], ["--device", "cpu", "--quiet"])
    assert pid > 0
    deadline = time.time() + 120
    while time.time() < deadline:
        p = read_progress(run)
        if p["state"] in ("finished", "interrupted", "stopped") and p["pid"] is None and p["done"] + p["failed"]:
            break
        time.sleep(0.5)
    assert (p["state"], p["failed"], p["done"]) == ("finished", len(scans), 0), p
    assert p["report"] and os.path.isfile(p["report"])
