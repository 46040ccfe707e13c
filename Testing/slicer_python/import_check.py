"""Import every TextSegLib module and the Slicer module's Qt-free packages under the Python of the
oldest supported Slicer (5.10 ships Python 3.12), in its own virtual environment.

Run by ``make slicer-python-check`` (which ``.ci/run`` calls before ``make test``). Modules that
need an optional extra the Slicer install does not carry (training, DICOM, PACS, cohorts, Ray
Serve) are imported only when that extra is present; every other module must import.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: import name of the extra a module needs -> whether it is installed in this environment
OPTIONAL = ("highdicom", "pydicom", "dicomweb_client", "pyarrow", "ray", "huggingface_hub", "matplotlib")


def main() -> int:
    sys.path[:0] = [str(ROOT), str(ROOT / "TextSeg")]
    import TextSegLib

    have = {name: importlib.util.find_spec(name) is not None for name in OPTIONAL}
    names = ["TextSegLib"] + [m.name for m in pkgutil.walk_packages(TextSegLib.__path__, "TextSegLib.")]
    names += ["TextSegLogicLib", "TextSegPanelLib"]
    for pkg in ("TextSegLogicLib",):
        mod = importlib.import_module(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, pkg + ".")]
    failed, skipped = [], []
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing in have and not have[missing]:
                skipped.append(f"{name} (needs {missing})")
                continue
            if missing == "slicer":  # parts that only run inside the Slicer application
                skipped.append(f"{name} (needs the Slicer application)")
                continue
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - report every module, then fail
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    v = ".".join(map(str, sys.version_info[:3]))
    print(f"Python {v}: imported {len(names) - len(failed) - len(skipped)} module(s), "
          f"{len(skipped)} need an absent extra or the Slicer application")
    for s in skipped:
        print("  not imported:", s)
    for f in failed:
        print("  FAILED:", f)
    if sys.version_info[:2] < (3, 12):
        print(f"  FAILED: this check must run on Slicer 5.10's Python 3.12, not {v}")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
