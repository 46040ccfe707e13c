"""Module files, dependency install, settings/consent, prompts and terminology helpers."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET

import pytest

from _module_helpers import ROOT

from TextSegLib.errors import ModelError, TerminologyError
from TextSegLogicLib import deps, engines
from TextSegLogicLib.settings import TextSegSettings, ensure_upload_consent
from TextSegLogicLib.prompts import parse_prompts

MODULE = ROOT / "TextSeg"


def test_cmake_lists_every_script_and_resource():
    cmake = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in cmake and "WITH_GENERIC_TESTS" in cmake
    assert "BUILD_TESTING" in cmake and "slicer_add_python_unittest" in cmake
    scripts = sorted(p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts)
    listed = re.findall(r"^\s+(\S+\.py)$", cmake, re.M)
    listed = [s.replace("${MODULE_NAME}", "TextSeg") for s in listed]
    assert sorted(listed) == scripts
    for res in ("Resources/Icons/TextSeg.png", "Resources/UI/TextSeg.ui"):
        assert (MODULE / res).is_file()


def test_ui_has_selectors_bound_to_parameter_node():
    root = ET.parse(MODULE / "Resources" / "UI" / "TextSeg.ui").getroot()
    widgets = {w.get("name"): w for w in root.iter("widget")}
    assert widgets["inputVolumeSelector"].get("class") == "qMRMLNodeComboBox"
    assert widgets["outputSegmentationSelector"].get("class") == "qMRMLNodeComboBox"
    assert "panelHost" in widgets
    bound = {
        w.get("name"): p.find("string").text
        for w in root.iter("widget")
        for p in w.findall("property")
        if p.get("name") == "SlicerParameterName"
    }
    source = (MODULE / "TextSeg.py").read_text()
    for name, param in bound.items():
        assert re.search(rf"^\s+{param}: ", source, re.M), f"{name} bound to unknown parameter {param}"


def test_logic_package_has_no_qt_imports():
    for path in (MODULE / "TextSegLogicLib").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for n in names:
                assert n.split(".")[0] not in {"qt", "Qt", "PySide6", "PyQt5", "PyQt6", "ctk"}, f"{path.name} imports {n}"
    compile((MODULE / "TextSeg.py").read_text(), "TextSeg.py", "exec")


def test_dependency_install_asks_then_installs_torch_and_pins():
    missing = deps.missing_requirements(lambda name: None if name in ("torch", "uvicorn") else object())
    assert missing == ["torch", "uvicorn"]
    calls: list = []
    ok = deps.install_missing(missing, lambda msg: calls.append(("ask", msg)) or True, lambda reqs: calls.append(("pip", reqs)), lambda req: calls.append(("torch", req)) or object())
    assert ok and calls[1] == ("torch", "torch>=2.1") and calls[2] == ("pip", ["uvicorn>=0.29"])
    assert "uvicorn" in calls[0][1]
    assert not deps.install_missing(["uvicorn"], lambda msg: False, lambda r: pytest.fail("installed"), lambda r: None)
    with pytest.raises(ModelError, match="PyTorch"):
        deps.install_missing(["torch"], lambda m: True, lambda r: None, lambda r: None)
    assert deps.install_missing([], lambda m: pytest.fail("asked"), lambda r: None, lambda r: None)


def test_upload_consent_and_server_history():
    s = TextSegSettings({})
    asked: list[str] = []
    assert not ensure_upload_consent(s, "http://srv", lambda u: (asked.append(u), (False, False))[1])
    assert ensure_upload_consent(s, "http://srv", lambda u: (asked.append(u), (True, False))[1])
    assert ensure_upload_consent(s, "http://srv/", lambda u: (asked.append(u), (True, True))[1])
    assert ensure_upload_consent(s, "http://srv", lambda u: pytest.fail("asked again"))
    assert len(asked) == 3
    for i in range(12):
        s.remember_server(f"http://h{i}:8000/")
    s.remember_server("http://h5:8000")
    hist = s.server_history()
    assert len(hist) == 10 and hist[0] == "http://h5:8000" and hist.count("http://h5:8000") == 1


def test_prompt_box_splits_like_the_cli():
    """The module's split is TextSegLib's: "kidney, left" is one prompt (the old panel split it in two)."""
    from TextSegLib.knowledge import split_prompts

    assert parse_prompts("liver, Spleen\n left  kidney;;liver,") == ["liver", "Spleen", "left kidney"]
    assert parse_prompts("kidney, left, spleen") == ["kidney, left", "spleen"] == split_prompts("kidney, left, spleen")


def test_model_descriptions_and_choices():
    """The selected model's own terms, free-text ability and modalities, read from its files."""
    d = engines.describe("bundled")
    assert d.name == "textseg-mini" and d.free_text is False and d.modalities == ("ct", "mri")
    assert "liver" in d.vocabulary("ct") and d.vocabulary("pet") == []
    sat = engines.describe("sat-nano")
    assert sat.free_text and "liver" in sat.vocabulary("ct")
    with pytest.raises(ModelError, match="Unknown model"):
        engines.check("nope")
    assert engines.available("remote") == (True, "")
    ok, reason = engines.available("sat-pro")
    assert ok or "SAT-Pro" in reason  # not downloaded here: the tooltip says how to get it
    assert engines.default_choice({"bundled": (False, "x"), "sat-nano": (False, "y"), "remote": (True, "")}) == "bundled"


def test_model_folder_field_is_used(tmp_path):
    """The "Model folder" setting is where the engine process loads the model from."""
    from TextSegLogicLib.engine_process import EngineConfig, EngineProcess

    with pytest.raises(ModelError, match="does not exist"):
        engines.check("sat-nano", str(tmp_path / "missing"))
    ok, reason = engines.available("bundled", str(tmp_path))
    assert not ok and "config.json" in reason
    bundled = ROOT / "Resources" / "models" / "textseg-mini"
    assert engines.available("bundled", str(bundled)) == (True, "")
    cmd = EngineProcess(EngineConfig(model="textseg-mini", model_dir=str(bundled))).command()
    assert cmd[cmd.index("--model-path") + 1] == str(bundled) and "--model" not in cmd
    assert "--host" in cmd and cmd[cmd.index("--host") + 1] == "127.0.0.1"
