"""The QC report in a real headless browser (Debian ``chromium``): rows, images, filter."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={tmp / 'profile'}", "--allow-file-access-from-files", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture()
def run_dir(tmp_path):
    """A run folder with three done cases (real thumbnails of a synthetic scan) and a failed one."""
    from TextSegLib.cohort.outputs import CASES
    from TextSegLib.cohort.report import build_report
    from TextSegLib.cohort.tables import mark_outliers
    from TextSegLib.overlay import write_thumbnails
    from TextSegLib.volume import Volume

    run = tmp_path / "run"
    z, y, x = np.mgrid[:40, :40, :30]
    img = (np.hypot(z - 20, y - 20) < 14) * 60.0 - 1000 * (np.hypot(z - 20, y - 20) >= 18)
    vol = Volume(img.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0]), modality="ct")
    cases = []
    for i, r in enumerate((8, 8.5, 9)):
        cid = f"case{i}"
        (run / CASES / cid).mkdir(parents=True)
        liver = np.hypot(z - 20, y - 20) < r
        spleen = (np.hypot(z - 12, y - 28) < 3) & (x > 10)
        write_thumbnails(vol, {"Liver": liver, "Spleen": spleen}, {"Liver": (0.87, 0.5, 0.4), "Spleen": (0.6, 0.3, 0.7)},
                         run / CASES / cid / "qc.png")
        rows = [{"case_id": cid, "structure": "Liver", "found": True, "volume_ml": float(liver.sum() * 0.027)},
                {"case_id": cid, "structure": "Spleen", "found": i != 2, "volume_ml": 1.0 if i != 2 else 0.0,
                 "reason": "" if i != 2 else "nothing above the threshold"}]
        cases.append({"case_id": cid, "state": "done", "modality": "ct", "seconds": 3.0 + i, "rows": rows,
                      "colors": {"Liver": (0.87, 0.5, 0.4), "Spleen": (0.6, 0.3, 0.7)}})
    cases.append({"case_id": "broken", "state": "failed", "error": "broken.nii.gz: the file is truncated.", "rows": []})
    mark_outliers([r for c in cases for r in c["rows"]])
    build_report(run, cases, ["Liver", "Spleen"], settings={"model": "textseg-mini", "prompts": ["liver", "spleen"]})
    return run


def test_report_rows_and_images_render_in_chromium(run_dir, tmp_path):
    url = (run_dir / "report.html").as_uri()
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", url).stdout
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert 'data-images-loaded="3"' in body and 'data-images-broken="0"' in body, body
    assert len(re.findall(r'<tr class="done"', dom)) == 3 and len(re.findall(r'<tr class="failed"', dom)) == 1
    assert "the file is truncated" in dom and "not found" in dom
    assert dom.count('class="legend"') == 3 and "rgb(222,128,102)" in dom  # colour legend under the overlays
    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,800", f"--screenshot={shot}", url)
    assert shot.is_file() and shot.stat().st_size > 10_000, r.stderr[-500:]
    from matplotlib import image as mpimg

    px = mpimg.imread(str(shot))
    assert px.shape[0] == 800 and px[..., :3].std() > 0.05  # not a blank page


def test_report_filter_shows_only_failed_cases(run_dir, tmp_path):
    dom = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom",
                    (run_dir / "report.html").as_uri() + "#filter=failed").stdout
    rows = re.findall(r'<tr class="\w+"[^>]*>', dom)
    shown = [re.match(r'<tr class="(\w+)"', t).group(1) for t in rows if "display: none" not in t]
    assert shown == ["failed"], rows
    assert re.search(r'<span id="shown">1</span>', dom)
