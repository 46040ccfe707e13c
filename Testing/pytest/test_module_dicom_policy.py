"""DICOM in Slicer 5.10 and 5.12: DICOM SEG export, SEG import and Send to PACS need Slicer >= 5.12.

Slicer's pins (SuperBuild/External_python-dicom-requirements.cmake): v5.10.0 ships pydicom 2.4.4,
dicomweb-client 0.60.0 and no highdicom; v5.12.0 ships pydicom 3.0.2, highdicom 0.27.0 and
dicomweb-client 0.61.0. The version lookups below stand in for those site-packages; the last test
runs the library in a real second Python with pydicom 2.4.4 (``TEXTSEG_PYDICOM24_PYTHON``).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from _module_helpers import ROOT  # noqa: F401 (puts the module folder on sys.path)
from TextSegLogicLib import deps

ROOT = Path(__file__).resolve().parents[2]  # the repository
SLICER_510 = {"pydicom": "2.4.4", "dicomweb-client": "0.60.0"}
SLICER_512 = {"pydicom": "3.0.2", "highdicom": "0.27.0", "dicomweb-client": "0.61.0"}


def test_reason_on_slicer_510_and_none_on_512():
    reason = deps.dicom_unavailable(SLICER_510.get)
    assert reason == ("DICOM SEG export, SEG import and Send to PACS need 3D Slicer 5.12 or later (it ships "
                      "highdicom 0.27 with pydicom 3); this Slicer has pydicom 2.4.4 and no highdicom. "
                      "Export to .seg.nrrd or NIfTI still works.")
    assert "pip install" not in reason and "\n" not in reason
    assert deps.dicom_unavailable(SLICER_512.get) == ""
    # highdicom 0.26 lacks CIELabColor.from_rgb, which the writer calls: not enough either
    assert "highdicom 0.26.0" in deps.dicom_unavailable({**SLICER_512, "highdicom": "0.26.0"}.get)


def test_floors_are_pyprojects_dicom_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dicom"]
    for dist, low in deps.DICOM_NEEDS.values():
        assert f"{dist}>={low}" in extra, (dist, low, extra)


def test_highdicom_floor_is_what_the_code_calls():
    """The writer and reader call CIELabColor.from_rgb / to_rgb / from_dicom_value (highdicom 0.27)."""
    import highdicom as hd

    from TextSegLib.io import dicomseg

    assert dicomseg.HIGHDICOM_MIN == (0, 27) and dicomseg.PYDICOM_MIN == (3, 0, 1)
    for name in ("from_rgb", "to_rgb", "from_dicom_value"):
        assert hasattr(hd.color.CIELabColor, name)
    source = (ROOT / "TextSegLib/io/dicomseg.py").read_text() + (ROOT / "TextSegLib/io/dicomseg_read.py").read_text()
    assert "CIELabColor.from_rgb" in source and "CIELabColor.from_dicom_value" in source


def test_export_and_import_refuse_on_510_with_the_reason(tmp_path, monkeypatch):
    """On 5.10 the module's DICOM SEG export and import say why, in one line, and write nothing."""
    from TextSegLib.io.dicomseg import DicomSegError
    from TextSegLogicLib import dicom_export

    monkeypatch.setattr(deps, "_installed", SLICER_510.get)
    out = tmp_path / "x.dcm"
    with pytest.raises(DicomSegError) as exc:
        dicom_export.export_dicom_seg(None, None, None, str(out))
    assert str(exc.value).startswith("DICOM SEG export, SEG import and Send to PACS need 3D Slicer 5.12")
    assert not out.exists()
    fake = tmp_path / "seg.dcm"
    fake.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    with pytest.raises(DicomSegError, match="need 3D Slicer 5.12"):
        dicom_export.import_dicom_seg(None, str(fake))


PYD24 = os.environ.get("TEXTSEG_PYDICOM24_PYTHON") or ("/tmp/venv-pyd24/bin/python" if Path("/tmp/venv-pyd24/bin/python").exists() else "")

PYD24_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    import numpy as np
    import pydicom
    spec = importlib.util.spec_from_file_location("deps", sys.argv[1])
    deps = importlib.util.module_from_spec(spec); spec.loader.exec_module(deps)
    from TextSegLib.errors import TextSegError
    from TextSegLib.io.dicomseg import write_dicom_seg
    from TextSegLib.io.dicomseg_read import is_dicom_seg, read_dicom_seg
    from TextSegLib.segmentation import Geometry, Segment, Segmentation
    out = {"pydicom": pydicom.__version__, "reason": deps.dicom_unavailable(),
           "is_seg": is_dicom_seg(sys.argv[2]), "is_seg_ct": is_dicom_seg(sys.argv[3])}
    seg = Segmentation(Geometry((2, 2, 2), np.eye(4)))
    seg.add(Segment("Liver", np.ones((2, 2, 2), bool)))
    for name, call in (("write", lambda: write_dicom_seg(seg, [sys.argv[3]], sys.argv[4])),
                       ("read", lambda: read_dicom_seg(sys.argv[2]))):
        try:
            call()
            out[name] = "no error"
        except TextSegError as exc:
            out[name] = str(exc)
    print(json.dumps(out))
""")


@pytest.mark.skipif(not PYD24, reason="no second Python with pydicom 2.4.4 (set TEXTSEG_PYDICOM24_PYTHON; .ci/run makes one)")
def test_library_on_real_pydicom_244(tmp_path):
    """Slicer 5.10's pydicom 2.4.4 in a real interpreter: the reason is Slicer's, the writer and
    reader refuse in one line, and recognising a SEG file (pydicom only) still works."""
    import json

    from _dicomseg_helpers import build_series
    from TextSegLib.io import read_volume
    from TextSegLib.io.dicomseg import write_dicom_seg
    from TextSegLib.segmentation import Segment, Segmentation

    folder = build_series(tmp_path / "series", "axial")
    volume = read_volume(folder)
    seg = Segmentation(volume)
    mask = np.zeros(volume.shape, bool)
    mask[2:5, 2:5, 1:3] = True
    seg.add(Segment("Spleen", mask))
    written = write_dicom_seg(seg, folder, tmp_path / "seg.dcm").path  # pydicom 3 here
    ct = sorted(folder.iterdir())[0]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([PYD24, "-c", PYD24_SCRIPT, str(ROOT / "TextSeg/TextSegLogicLib/deps.py"), str(written),
                          str(ct), str(tmp_path / "out.dcm")], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["pydicom"] == "2.4.4"
    assert got["reason"].startswith("DICOM SEG export, SEG import and Send to PACS need 3D Slicer 5.12")
    assert "pydicom 2.4.4 and no highdicom" in got["reason"]
    assert got["is_seg"] is True and got["is_seg_ct"] is False
    for key in ("write", "read"):
        assert got[key].startswith("DICOM SEG needs pydicom >= 3.0.1 and highdicom >= 0.27; this Python has pydicom 2.4.4")
        assert "\n" not in got[key]
    assert not (tmp_path / "out.dcm").exists()
    assert sys.version_info >= (3, 10)
