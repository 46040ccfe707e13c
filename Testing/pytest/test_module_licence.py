"""The model selector's licence line for VoxTell: shown with the sizes before download, consent
asked once and shared with the CLI's ``$TEXTSEG_HOME/consent.json``."""
from __future__ import annotations

import json
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import pytest  # noqa: E402

from _module_helpers import wait_for_download  # noqa: E402  (also puts the module folders on sys.path)

from TextSegLib.models import catalog  # noqa: E402
from _voxtell_helpers import release_layout  # noqa: E402
from TextSegLogicLib import engines, licences  # noqa: E402

LICENCE = "CC-BY-NC-SA-4.0, non-commercial use only, share-alike"


# -- Qt-free logic ------------------------------------------------------------------------
def test_voxtell_is_a_local_choice_with_licence_and_sizes(home):
    assert "voxtell" in engines.LOCAL and "voxtell" in engines.DOWNLOADABLE
    assert licences.needs_licence("voxtell") and not licences.needs_licence("sat-nano")
    line = licences.licence_line("voxtell")
    assert LICENCE in line and "\n" not in line
    n = licences.notice("voxtell")
    assert n.startswith(line) and "fold_0/checkpoint_final.pth" in n and "~1.5 GB" in n
    assert "text_embeddings.npz" in n and "~50 MB" in n and "Qwen/Qwen3-Embedding-4B" in n and "~8.0 GB" in n
    ok, reason = engines.available("voxtell")
    assert not ok and "textseg models pull VoxTell" in reason
    shown = licences.selector_line("voxtell", ok, reason)
    assert "not available" in shown and LICENCE in shown and "~1.5 GB" in shown
    assert licences.selector_line("sat-nano", True, "") == ""


def test_consent_is_asked_once_and_is_the_clis(home):
    asked = []
    assert not licences.ensure_licence("voxtell", None)  # no dialog: never a silent yes
    assert not licences.ensure_licence("voxtell", lambda name, text: asked.append(text) or False)
    assert len(asked) == 1 and LICENCE in asked[0] and not catalog.consented("VoxTell")
    assert not (home / "consent.json").exists()
    assert licences.ensure_licence("voxtell", lambda name, text: asked.append(name) or True)
    assert asked[-1] == "VoxTell" and catalog.consented("VoxTell")  # the CLI sees it
    assert LICENCE in json.loads((home / "consent.json").read_text())["voxtell"]
    assert licences.ensure_licence("voxtell", lambda *a: pytest.fail("asked twice"))
    assert licences.ensure_licence("sat-nano", lambda *a: pytest.fail("SAT has no licence to accept"))


def test_consent_given_in_the_cli_is_not_asked_again(home):
    catalog.record_consent("VoxTell", catalog.get_entry("VoxTell").license)  # what `models pull --yes` stores
    assert licences.consented("voxtell")
    assert licences.ensure_licence("voxtell", lambda *a: pytest.fail("asked although accepted in the CLI"))


def test_registered_voxtell_describes_its_bank_and_free_text(home, tmp_path):
    catalog.register("VoxTell", release_layout(tmp_path / "vt"))
    assert engines.available("voxtell") == (True, "")
    d = engines.describe("voxtell")
    assert d.free_text and d.vocabulary("ct") == ["left kidney", "liver"] and d.vocabulary("mri") == d.vocabulary("ct")
    assert licences.selector_line("voxtell", True, "") == licences.licence_line("voxtell")
    bad = tmp_path / "empty"
    bad.mkdir()
    ok, reason = engines.available("voxtell", str(bad))
    assert not ok and "plans.json is missing" in reason and "\n" not in reason


# -- the panel under PySide6 ----------------------------------------------------------------
@pytest.fixture(scope="module")
def app():
    qtw = pytest.importorskip("Qt.QtWidgets", reason="Qt.py + PySide6 not installed")
    return qtw.QApplication.instance() or qtw.QApplication([])


def _controller(app):
    from slicer_bootstrap import make_scene
    from TextSegLogicLib import TextSegLogic
    from TextSegPanelLib.controller import TextSegController
    from TextSegPanelLib.panel import TextSegPanel

    env = make_scene()
    p = TextSegPanel()
    return p, TextSegController(p, TextSegLogic(**env.logics()), lambda: None, lambda: None)


def test_panel_shows_licence_before_download_and_asks_once(app, home, monkeypatch):
    from Qt import QtCore

    from TextSegPanelLib import qt_compat as qc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p, ctrl = _controller(app)
    i = p.model_combo.findData("voxtell")
    assert i >= 0 and LICENCE in p.model_combo.itemData(i, QtCore.Qt.ToolTipRole)
    p.model_combo.setCurrentIndex(i)
    label = qc.text(p.download_label)
    assert not p.download_button.isHidden() and LICENCE in label and "~1.5 GB" in label and "~8.0 GB" in label
    asked = []
    ctrl.ask_licence = lambda name, text: asked.append(text) or False
    p.download_button.click()  # refused: nothing starts, nothing is recorded
    assert ctrl.download_job is None and len(asked) == 1 and LICENCE in asked[0]
    assert "licence was not accepted" in qc.text(p.download_label) and not catalog.consented("VoxTell")
    ctrl.ask_licence = lambda name, text: asked.append(text) or True
    p.download_button.click()  # accepted: recorded, and the CLI child (no terminal) does not refuse it
    assert len(asked) == 2 and catalog.consented("VoxTell") and ctrl.download_job is not None
    wait_for_download(ctrl)
    message = qc.text(p.download_label)
    assert ctrl.download_job is None and "Traceback" not in message and "VoxTell" in message, message
    assert "licence was not accepted" not in message, message  # the child read the shared consent
    ctrl.ask_licence = lambda *a: pytest.fail("asked twice")
    p.download_button.click()
    p.download_button.click()  # start then cancel, without a second question
    assert ctrl.download_job is None or ctrl.download_job.state == "cancelled"
    p.deleteLater()


def test_panel_with_voxtell_installed_shows_only_the_licence(app, home, tmp_path):
    from TextSegPanelLib import qt_compat as qc

    catalog.register("VoxTell", release_layout(tmp_path / "vt"))
    p, ctrl = _controller(app)
    ctrl.refresh_models()
    p.model_combo.setCurrentIndex(p.model_combo.findData("voxtell"))
    assert p.download_button.isHidden() and qc.text(p.download_label) == licences.licence_line("voxtell")
    assert ctrl.model_terms("ct") == ["left kidney", "liver"]
    p.deleteLater()
