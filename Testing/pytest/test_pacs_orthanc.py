"""PACS round trip over DICOMweb against a real Orthanc on loopback (see _orthanc_helpers)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from _dicomseg_helpers import build_series
from _orthanc_helpers import orthanc, skip_module_without_orthanc  # noqa: F401 (orthanc: a fixture)
from TextSegLib.cli.main import main
from TextSegLib.io import read_segmentation, read_volume, write_dicom_seg
from TextSegLib.pacs import PacsClient, PacsError, resolve_settings
from TextSegLib.segmentation import Segment, Segmentation

pytest.importorskip("dicomweb_client")
skip_module_without_orthanc()


@pytest.fixture(scope="module")
def client(orthanc):
    return PacsClient(resolve_settings(orthanc.dicomweb, user=orthanc.credentials))


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, client):
    folder = build_series(tmp_path_factory.mktemp("series") / "axial", "axial")
    accepted = client.push(sorted(folder.iterdir()))
    return folder, accepted


def test_push_query_retrieve(tmp_path, client, pushed):
    folder, accepted = pushed
    assert len(accepted) == 20
    source = read_volume(folder)
    studies = client.find_studies(patient_id="TEXTSEG-FIXTURE")
    assert [s["StudyInstanceUID"] for s in studies] == [source.meta["StudyInstanceUID"]]
    series = client.find_series(study_uid=source.meta["StudyInstanceUID"])
    assert [s["SeriesInstanceUID"] for s in series] == [source.meta["SeriesInstanceUID"]]
    assert int(series[0]["NumberOfSeriesRelatedInstances"]) == 20
    got = client.pull_series(source.meta["SeriesInstanceUID"], cache=tmp_path / "cache")
    assert (got / ".complete").is_file() and len(list(got.glob("*.dcm"))) == 20
    pulled = read_volume(got)
    assert np.array_equal(pulled.array, source.array) and np.allclose(pulled.ijk_to_ras, source.ijk_to_ras)
    assert client.pull_series(source.meta["SeriesInstanceUID"], cache=tmp_path / "cache") == got  # cached


def test_push_seg_and_pull_it_back(tmp_path, client, pushed, capsys):
    folder, _ = pushed
    volume = read_volume(client.pull_series(read_volume(folder).meta["SeriesInstanceUID"], cache=tmp_path / "c"))
    a = np.zeros(volume.shape, bool)
    a[300:360, 200:260, 4:9] = True
    seg = Segmentation(volume, [Segment("Left kidney", a, meta={"prompt": "left kidney"})])
    seg.meta["model"] = "textseg-mini"
    (tmp_path / "segs").mkdir()
    report = write_dicom_seg(seg, volume, tmp_path / "segs" / "seg.dcm", segmentation_type="LABELMAP")
    capsys.readouterr()
    assert main(["pacs", "--url", client.settings.url, "--user",
                 f"{client.settings.username}:{client.settings.password}", "push", "--uids", str(report.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == report.sop_instance_uid and out[-1].startswith("1 instance(s) stored on ")
    # a folder is accepted too, and by default only the summary is printed
    assert main(["pacs", "--url", client.settings.url, "--user",
                 f"{client.settings.username}:{client.settings.password}", "push", str(tmp_path / "segs")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"1 instance(s) stored on {client.settings.url}."]
    rows = client.find_series(study_uid=volume.meta["StudyInstanceUID"], modality="SEG")
    assert [r["SeriesInstanceUID"] for r in rows] == [report.series_instance_uid]
    seg_folder = client.pull_series(report.series_instance_uid, cache=tmp_path / "c")
    back = read_segmentation(next(seg_folder.glob("*.dcm")), reference=volume)
    assert back.names == ["Left kidney"] and np.array_equal(back["Left kidney"].mask, a)
    assert back.meta["model"] == "textseg-mini"


def test_wrong_password_and_bearer_token_are_refused_without_leaking(orthanc, pushed, caplog):
    caplog.set_level(logging.DEBUG)
    bad = PacsClient(resolve_settings(orthanc.dicomweb, user="textseg:not-the-password"))
    with pytest.raises(PacsError, match="refused the credentials.*HTTP 401") as err:
        bad.find_studies()
    assert "not-the-password" not in str(err.value) and "not-the-password" not in caplog.text
    token = "tok-" + "x" * 20
    bearer = PacsClient(resolve_settings(orthanc.dicomweb, token=token))
    with pytest.raises(PacsError, match="HTTP 401") as err:
        bearer.find_series()
    assert token not in str(err.value) and token not in caplog.text and token not in repr(bearer)


def test_cli_wrong_token_is_one_line(orthanc, capsys, monkeypatch):
    monkeypatch.setenv("TEXTSEG_DICOMWEB_USER", "textseg:wrong-secret")
    assert main(["pacs", "--url", orthanc.dicomweb, "studies"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("textseg: error:") and "HTTP 401" in err and "wrong-secret" not in err


def test_unknown_series(tmp_path, client, pushed, capsys):
    with pytest.raises(PacsError, match="no series with UID 1.2.3.4.5 on the server"):
        client.pull_series("1.2.3.4.5", cache=tmp_path)
    study = read_volume(pushed[0]).meta["StudyInstanceUID"]
    with pytest.raises(PacsError, match="HTTP 404"):
        client.pull_series("1.2.3.4.5", study_uid=study, cache=tmp_path)
    assert not any(tmp_path.rglob("*.dcm"))
    assert main(["pacs", "--url", client.settings.url, "--user",
                 f"{client.settings.username}:{client.settings.password}", "pull", "1.2.3.4.5"]) != 0
    assert "no series with UID 1.2.3.4.5" in capsys.readouterr().err


@pytest.mark.slow
def test_segment_from_pacs_and_push(tmp_path, orthanc, client, pushed, capsys, monkeypatch):
    """textseg segment --dicomweb URL --series UID --push with the bundled model."""
    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEXTSEG_DICOMWEB_USER", orthanc.credentials)
    series = read_volume(pushed[0]).meta["SeriesInstanceUID"]
    out = tmp_path / "liver.dcm"
    assert main(["segment", "--dicomweb", orthanc.dicomweb, "--series", series, "-p", "liver",
                 "--model", "textseg-mini", "--quiet", "-o", str(out), "--push"]) == 0
    err = capsys.readouterr().err
    assert "Pushed liver.dcm" in err and orthanc.password not in err
    seg = read_segmentation(out)
    assert seg.names == ["Liver"] and seg.meta["model"] == "textseg-mini" and len(seg.meta["weights_sha256"]) == 64
    rows = client.find_series(modality="SEG")
    assert seg.meta["SeriesInstanceUID"] in [r["SeriesInstanceUID"] for r in rows]


def test_slicer_send_to_pacs(tmp_path, orthanc, client, pushed):
    """The Slicer logic's Send to PACS stores a SEG with STOW-RS."""
    pytest.importorskip("slicer", reason="PyPI slicer-core is not installed")
    import _module_helpers  # noqa: F401  (puts TextSeg/ on sys.path)
    from TextSegLogicLib.dicom_export import send_to_pacs

    volume = read_volume(pushed[0])
    m = np.zeros(volume.shape, bool)
    m[200:220, 200:220, 3:5] = True
    report = write_dicom_seg(Segmentation(volume, [Segment("Spleen", m)]), volume, tmp_path / "s.dcm")
    assert send_to_pacs(str(report.path), orthanc.dicomweb, user=orthanc.credentials) == [report.sop_instance_uid]
    assert report.series_instance_uid in [r["SeriesInstanceUID"] for r in client.find_series(modality="SEG")]
    with pytest.raises(PacsError, match="HTTP 401"):
        send_to_pacs(str(report.path), orthanc.dicomweb, user="textseg:nope")


def test_batch_listing_errors_for_dicomweb_cases(tmp_path):
    """A series list needs --dicomweb; a malformed UID is refused with its line."""
    from TextSegLib.cohort.inputs import load_cases, read_series_list
    from TextSegLib.errors import InputFileError

    good = tmp_path / "series.txt"
    good.write_text("# two series\n1.2.840.1\n1.2.840.2  # second\n")
    cases = load_cases(good, dicomweb="http://127.0.0.1:1/dicom-web").cases
    assert [(c.case_id, c.path) for c in cases] == [("1.2.840.1", "dicomweb:1.2.840.1"), ("1.2.840.2", "dicomweb:1.2.840.2")]
    bad = tmp_path / "bad.txt"
    bad.write_text("1.2.840.1\nnot-a-uid\n")
    with pytest.raises(InputFileError, match="bad.txt line 2"):
        read_series_list(bad)
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,path\na,dicomweb:1.2.3\n")
    rc = main(["batch", str(manifest), "-o", str(tmp_path / "run"), "-p", "liver", "--model", "textseg-mini", "--quiet"])
    assert rc == 2 and not (tmp_path / "run" / "cases").exists()


@pytest.mark.slow
def test_batch_over_dicomweb_series_writes_seg(tmp_path, orthanc, client, pushed, capsys, monkeypatch):
    """textseg batch --dicomweb: the series is pulled into the run folder and segmented; its
    DICOM SEG references the PACS series; the password never reaches the manifest or the output."""
    import json

    monkeypatch.setenv("TEXTSEG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEXTSEG_DICOMWEB_USER", orthanc.credentials)
    series = read_volume(pushed[0]).meta["SeriesInstanceUID"]
    listing = tmp_path / "series.txt"
    listing.write_text(f"{series}\n")
    run = tmp_path / "run"
    rc = main(["batch", str(listing), "--dicomweb", orthanc.dicomweb, "-o", str(run), "-p", "liver",
               "--model", "textseg-mini", "--threads", "1", "-f", "dicomseg", "-f", "seg.nrrd", "--no-thumbnails",
               "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert orthanc.password not in out.err + out.out
    records = [json.loads(line) for line in (run / "manifest.jsonl").read_text().splitlines()]
    assert orthanc.password not in json.dumps(records)
    done = [r for r in records if r.get("kind") == "case" and r.get("state") == "done"]
    assert [r["case_id"] for r in done] == [series]
    segs = list((run / "cases" / series).glob("*.dcm"))
    assert len(segs) == 1
    seg = read_segmentation(segs[0])
    assert seg.names == ["Liver"]
    assert seg.meta["SeriesInstanceUID"] != series  # a new SEG series, which references the PACS one
    import pydicom

    ds = pydicom.dcmread(segs[0], stop_before_pixels=True)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == series
