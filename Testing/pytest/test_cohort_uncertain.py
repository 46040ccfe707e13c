"""Cohort tables and the QC report show the "uncertain" presence state (issue 21)."""
from __future__ import annotations

import csv
import re
import shutil
import subprocess

import numpy as np
import pytest

from TextSegLib.cohort.report import build_report
from TextSegLib.cohort.tables import COLUMNS, SUMMARY_COLUMNS, mark_outliers, summarize, write_csv

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _cases() -> list[dict]:
    """case0 found, case1 spleen uncertain (0.55), case2 from an old run (no state column), case3 failed."""
    cases = []
    for i in range(3):
        spleen = {"case_id": f"case{i}", "structure": "Spleen", "found": True, "volume_ml": 150.0 + i}
        if i == 1:
            spleen.update(state="uncertain", presence_probability=0.55)
        elif i == 0:
            spleen.update(state="found", presence_probability=0.98)
        rows = [{"case_id": f"case{i}", "structure": "Liver", "found": True, "volume_ml": 1500.0 + i}, spleen]
        cases.append({"case_id": f"case{i}", "state": "done", "modality": "ct", "seconds": 2.0, "rows": rows,
                      "colors": {}})
    cases.append({"case_id": "case3", "state": "failed", "error": "truncated", "rows": []})
    mark_outliers([r for c in cases for r in c["rows"]])
    return cases


def test_tables_have_state_and_presence_columns(tmp_path):
    rows = [r for c in _cases() for r in c["rows"]]
    assert COLUMNS[-2:] == ["state", "presence_probability"] and "mean_probability" in COLUMNS
    out = {(r["case_id"], r["structure"]): r for r in csv.DictReader(write_csv(tmp_path / "m.csv", rows, COLUMNS).open())}
    assert out[("case1", "Spleen")]["state"] == "uncertain" and float(out[("case1", "Spleen")]["presence_probability"]) == 0.55
    assert out[("case2", "Spleen")]["state"] == "found"  # an old run's row: the state from 'found'
    summary = {r["structure"]: r for r in summarize(rows)}
    assert "uncertain" in SUMMARY_COLUMNS and summary["Spleen"]["uncertain"] == 1 and summary["Liver"]["uncertain"] == 0
    assert summary["Spleen"]["found"] == 3  # an uncertain structure is kept, so it counts as found too


def test_plain_name_drops_the_mark():
    from TextSegLib.engine.results import plain_name

    assert plain_name("Spleen ?") == "Spleen" and plain_name("Liver") == "Liver"


def test_report_lists_uncertain_cases_first(tmp_path):
    page = build_report(tmp_path, _cases(), ["Liver", "Spleen"]).read_text()
    order = re.findall(r'data-case="(\w+)"', page)
    assert order == ["case1", "case0", "case2", "case3"], order
    assert "Spleen: uncertain (presence 0.55): review" in page
    assert 'class="num unc"' in page and 'data-uncertain="1"' in page and "uncertain: 1 (listed first)" in page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (.ci/run installs it)")
def test_report_uncertain_filter_in_chromium(tmp_path):
    build_report(tmp_path, _cases(), ["Liver", "Spleen"])
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                        (tmp_path / "report.html").as_uri() + "#filter=uncertain"], capture_output=True, text=True,
                       timeout=120)
    rows = re.findall(r'<tr class="\w+"[^>]*>', r.stdout)
    shown = [re.search(r'data-case="(\w+)"', t).group(1) for t in rows if "display: none" not in t]
    assert shown == ["case1"], rows
    assert np.all([("display: none" in t) for t in rows if 'data-case="case1"' not in t])
