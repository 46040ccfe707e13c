"""The shipped DICOM sample becomes a DICOM SEG (via `textseg dicom fix-uids`); empty UIDs are
all named in one line before model work; SEG series numbers and descriptions tell SEGs apart."""
from __future__ import annotations

import shutil

import pytest

from _bundled_helpers import shipped_model_available
from conftest import DATA
from TextSegLib.cli.main import main

SAMPLE = DATA / "totalsegmentator" / "example_ct_dicom"
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")


def test_every_empty_uid_of_every_file_in_one_line(tmp_path, capsys):
    from TextSegLib.io.dicom_uids import check_uids, fix_uids
    from TextSegLib.io.dicomseg import DicomSegError

    fixed = tmp_path / "fixed"
    fix_uids(SAMPLE, fixed)
    files = sorted(str(p) for p in fixed.iterdir())
    check_uids(files)  # complete now
    ds = pydicom.dcmread(files[15])
    ds.FrameOfReferenceUID = ""
    ds.save_as(files[15])
    with pytest.raises(DicomSegError) as e:
        check_uids(files)
    msg = str(e.value)
    assert "\n" not in msg and "FrameOfReferenceUID (1 of 20 files:" in msg and "fix-uids" in msg
    with pytest.raises(DicomSegError) as e:
        check_uids(sorted(str(p) for p in SAMPLE.iterdir()))
    assert all(f"{k} (20 of 20 files)" in str(e.value)
               for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"))


def test_fix_uids_is_deterministic_and_never_overwrites(tmp_path, capsys):
    assert main(["dicom", "fix-uids", str(SAMPLE), str(tmp_path / "a")]) == 0
    assert main(["dicom", "fix-uids", str(SAMPLE), str(tmp_path / "b")]) == 0
    a = pydicom.dcmread(sorted((tmp_path / "a").iterdir())[0], stop_before_pixels=True)
    b = pydicom.dcmread(sorted((tmp_path / "b").iterdir())[0], stop_before_pixels=True)
    assert a.StudyInstanceUID == b.StudyInstanceUID and a.SOPInstanceUID
    capsys.readouterr()
    assert main(["dicom", "fix-uids", str(SAMPLE), str(tmp_path / "a")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.skipif(not shipped_model_available(), reason="the shipped textseg-mini weights are absent")
def test_shipped_dicom_sample_gives_a_dicom_seg(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "liver.dcm"
        rc = main(["segment", str(SAMPLE), "-p", "liver", "-o", str(out), "--device", "cpu"])
        assert rc == 2 and "fix-uids" in capsys.readouterr().err  # refused before model work
        assert main(["dicom", "fix-uids", str(SAMPLE), str(tmp_path / "ct")]) == 0
        rc = main(["segment", str(tmp_path / "ct"), "-p", "liver", "-p", "spleen", "-o", str(out), "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SeriesDescription.startswith("TextSeg: Liver")
    assert "ContentCreatorName" in ds and int(ds.SeriesNumber) != 1000


def test_seg_naming():
    from TextSegLib.io.dicomseg_naming import seg_series_description, seg_series_number

    assert seg_series_number({"SeriesNumber": "3"}) == 1003
    assert seg_series_number({"SeriesInstanceUID": "1.2.3"}) != seg_series_number({"SeriesInstanceUID": "1.2.4"})
    d = seg_series_description([f"Structure number {i}" for i in range(10)])
    assert len(d) <= 64 and d.startswith("TextSeg: Structure number 0") and "more" in d


def test_docs_make_no_stale_send_to_pacs_claim():
    """The panel has a Send to PACS button (TextSegPanelLib.pacs_panel): no doc may say otherwise."""
    from conftest import REPO

    assert "Send to PACS" in (REPO / "TextSeg" / "TextSegPanelLib" / "pacs_panel.py").read_text() \
        or "Send to PACS" in (REPO / "TextSeg" / "TextSegPanelLib" / "panel.py").read_text()
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = " ".join(doc.read_text(encoding="utf-8").split())
        assert 'no "Send to PACS" button yet' not in text and "no button for it yet" not in text, doc


def test_readme_says_how_to_run_the_venv_command():
    from conftest import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash", 1)[1].split("```", 1)[0]
    commands = [ln.split("#")[0].strip() for ln in block.splitlines() if ln.split("#")[0].strip()]
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert all(f"\n{c.split()[1]}:" in makefile for c in commands)
    assert ".venv/bin/textseg" in quick and ". .venv/bin/activate" in quick
