"""The model catalog: which models exist, where their files are, how to get them,
and how to turn one into an :class:`~TextSegLib.engine.base.Engine`.

* Shipped list: ``Resources/models/catalog.json`` (SAT-Nano, SAT-Pro, textseg-mini).
* User state: ``$TEXTSEG_HOME`` (default ``~/.textseg``): ``models.json`` maps
  names to registered folders; ``models/<NAME>/`` receives ``pull`` downloads.
* A model folder holds the files named in the catalog, or any SAT-shaped model
  described by ``textseg-model.json`` (see :func:`load_manifest`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ModelError
from ..resources import resource_path

MANIFEST = "textseg-model.json"


@dataclass(frozen=True)
class ModelFile:
    name: str
    role: str
    remote_path: str = ""
    approx_size: int | None = None
    min_size: int | None = None
    sha256: str | None = None
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    name: str
    architecture: str
    description: str = ""
    variant: str = ""
    source: dict = field(default_factory=dict)
    files: tuple[ModelFile, ...] = ()
    tokenizer: str = ""
    license: str = ""
    inference: dict = field(default_factory=dict)


def textseg_home() -> Path:
    """User folder for TextSeg state: ``$TEXTSEG_HOME`` or ``~/.textseg``."""
    return Path(os.environ.get("TEXTSEG_HOME") or Path.home() / ".textseg").expanduser()


def load_catalog(path: str | os.PathLike | None = None) -> dict[str, ModelEntry]:
    """Catalog entries keyed by name."""
    p = Path(path) if path else resource_path("models", "catalog.json")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        entries = {}
        for m in data["models"]:
            files = tuple(ModelFile(**{**f, "alternatives": tuple(f.get("alternatives", ()))})
                          for f in m.get("files", []))
            entries[m["name"]] = ModelEntry(**{**m, "files": files})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{p}: the model catalog is unreadable ({type(exc).__name__}: {exc}).",
                         "Reinstall TextSeg or fix the JSON file.") from None
    return entries


def _find(name: str, entries: dict[str, Any]) -> str | None:
    low = {k.lower(): k for k in entries}
    return low.get(name.strip().lower())


def get_entry(name: str) -> ModelEntry:
    """The catalog entry called ``name`` (case-insensitive)."""
    cat = load_catalog()
    key = _find(name, cat)
    if key is None:
        raise ModelError(f"Unknown model {name!r}.",
                         f"Known models: {', '.join(sorted(cat))}; or register a folder with "
                         "`textseg models register NAME FOLDER`.")
    return cat[key]


# -- registry of local folders ------------------------------------------------------------
def _registry_file() -> Path:
    return textseg_home() / "models.json"


def registered() -> dict[str, str]:
    """Registered model folders: name → absolute path."""
    f = _registry_file()
    if not f.exists():
        return {}
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.get("models", {}).items()}
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"{f}: the model registry is unreadable ({exc}).",
                         "Fix or delete the file, then register your folders again.") from None


def _save_registry(models: dict[str, str]) -> None:
    f = _registry_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"models": models}, indent=1), encoding="utf-8")
    tmp.replace(f)


def register(name: str, folder: str | os.PathLike) -> Path:
    """Remember ``folder`` as model ``name`` (checked first). Returns the absolute path."""
    name = name.strip()
    if not name or any(c in name for c in "/\\"):
        raise ModelError(f"Model name {name!r} is invalid.", "Use a plain name such as SAT-Nano or my-model.")
    p = Path(folder).expanduser().resolve()
    if not p.is_dir():
        raise ModelError(f"{p}: not a folder.", "Register the folder that holds the model files.")
    entry = None
    key = _find(name, load_catalog())
    if key:
        entry = load_catalog()[key]
        name = key
    describe_folder(p, entry)  # raises if nothing loadable is there
    models = registered()
    for k in [k for k in models if k.lower() == name.lower()]:
        del models[k]
    models[name] = str(p)
    _save_registry(models)
    return p


def unregister(name: str) -> bool:
    models = registered()
    keys = [k for k in models if k.lower() == name.strip().lower()]
    for k in keys:
        del models[k]
    if keys:
        _save_registry(models)
    return bool(keys)


# -- verification ---------------------------------------------------------------------
def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def verify(entry: ModelEntry, folder: Path, check_hash: bool = True) -> list[str]:
    """Problems with ``folder`` as a copy of ``entry`` (empty list = complete)."""
    problems = []
    for mf in entry.files:
        p = folder / mf.name
        if not p.is_file():
            problems.append(f"{mf.name} is missing")
            continue
        size = p.stat().st_size
        if mf.min_size and size < mf.min_size:
            problems.append(f"{mf.name} is {size:,} bytes, smaller than the {mf.min_size:,} its weights need "
                            "(partial download?)")
        elif check_hash and mf.sha256 and file_sha256(p) != mf.sha256.lower():
            problems.append(f"{mf.name} has the wrong sha256 (corrupt or a different release)")
    return problems


def manual_steps(entry: ModelEntry, folder: Path) -> str:
    """What a user does by hand when automatic download is impossible."""
    src = entry.source
    lines = [f"Download by hand from {src.get('url') or src.get('repo_id', 'the model page')}:"]
    for mf in entry.files:
        size = f" (~{mf.approx_size / 1e9:.1f} GB)" if mf.approx_size else ""
        alt = f" (or {', '.join(mf.alternatives)})" if mf.alternatives else ""
        lines.append(f"  {mf.remote_path or mf.name}{alt}{size} -> {folder / mf.name}")
    lines.append(f"then run: textseg models register {entry.name} {folder}")
    if entry.tokenizer:
        lines.append(f"The text encoder also needs the tokenizer {entry.tokenizer} "
                     "(huggingface-cli download it, or set TEXTSEG_SAT_TOKENIZER to a folder with its files).")
    return "\n".join(lines)


def _consent_file() -> Path:
    return textseg_home() / "consent.json"


def consented(name: str) -> bool:
    """Whether the user accepted model ``name``'s licence (asked once, stored in $TEXTSEG_HOME)."""
    try:
        return bool(json.loads(_consent_file().read_text(encoding="utf-8")).get(name.lower()))
    except (OSError, ValueError, AttributeError):
        return False


def record_consent(name: str, licence: str) -> None:
    f = _consent_file()
    try:
        data = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    except ValueError:
        data = {}
    data[name.lower()] = licence
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(f)


def download_plan(entry: ModelEntry, text_encoder: bool = False) -> list[str]:
    """One line per part a pull downloads, with its size (shown before asking for consent)."""
    def gb(n):
        if not n:
            return "size unknown"
        return f"~{n / 1e9:.1f} GB" if n >= 1e8 else f"~{n / 1e6:.0f} MB" if n >= 1e6 else "< 1 MB"
    lines = [f"  {mf.name} ({mf.role.replace('_', ' ')}, {gb(mf.approx_size)})" for mf in entry.files]
    te = (entry.inference or {}).get("text_encoder")
    if te:
        what = "downloaded" if text_encoder else "not downloaded; add --text-encoder for prompts outside the bank"
        lines.append(f"  {te['repo_id']} text encoder ({gb(te.get('approx_size'))}, {te.get('license', '')}; {what})")
    return lines


def default_folder(name: str) -> Path:
    return textseg_home() / "models" / name


def model_path(name: str) -> Path:
    """The folder holding model ``name``: registered, bundled, or pulled."""
    regs = registered()
    key = _find(name, regs)
    if key:
        p = Path(regs[key])
        if not p.is_dir():
            raise ModelError(f"Model {key!r} is registered at {p}, which no longer exists.",
                             f"Register it again: textseg models register {key} NEW_FOLDER.")
        return p
    entry = get_entry(name)
    if entry.source.get("type") == "bundled":
        p = resource_path(*Path(entry.source["path"]).parts, must_exist=False)
        if not (p / "config.json").is_file():  # textseg-mini's weights + config (``textseg train``)
            raise ModelError(f"The bundled model {entry.name} is not installed ({p} is missing).",
                             "Reinstall TextSeg from a complete source checkout or release.")
        return p
    p = default_folder(entry.name)
    problems = verify(entry, p, check_hash=False) if p.is_dir() else ["not downloaded"]
    if problems:
        raise ModelError(f"Model {entry.name} is not available ({'; '.join(problems)}).",
                         f"Run `textseg models pull {entry.name}`, or:\n" + manual_steps(entry, p))
    return p


def pull(name: str, dest: str | os.PathLike | None = None,
         echo: Callable[[str], None] = lambda s: None, text_encoder: bool = False) -> Path:
    """Download model ``name`` with huggingface_hub, verify it, return its folder."""
    entry = get_entry(name)
    if entry.source.get("type") != "huggingface":
        return model_path(entry.name)
    if entry.architecture == "voxtell" and not consented(entry.name):
        raise ModelError(f"{entry.name}: the licence of its weights was not accepted. {entry.license}",
                         f"Run `textseg models pull {entry.name}` and answer yes, or pass --yes.")
    folder = Path(dest).expanduser().resolve() if dest else default_folder(entry.name)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ModelError("Downloading needs the huggingface_hub package (pip install 'textseg[hub]').",
                         manual_steps(entry, folder)) from None
    folder.mkdir(parents=True, exist_ok=True)
    for mf in entry.files:
        target = folder / mf.name
        if target.is_file() and not verify(ModelEntry(entry.name, entry.architecture, files=(mf,)), folder):
            echo(f"{mf.name}: already present")
            continue
        got, error = None, None
        for remote in (mf.remote_path or mf.name, *mf.alternatives):
            echo(f"{mf.name}: downloading {remote} from {entry.source['repo_id']} ...")
            try:
                got = Path(hf_hub_download(repo_id=entry.source["repo_id"], filename=remote,
                                           local_dir=str(folder / ".download")))
                break
            except Exception as exc:  # offline, 404, auth, disk: try the next name, then the manual route
                error = exc
                if type(exc).__name__ not in ("EntryNotFoundError", "RemoteEntryNotFoundError"):
                    break
        if got is None:
            msg = str(error).splitlines()[0] if error is not None and str(error) else ""
            raise ModelError(f"Could not download {mf.remote_path} for {entry.name} "
                             f"({type(error).__name__}: {msg}).", manual_steps(entry, folder)) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        got.replace(target)
    te = (entry.inference or {}).get("text_encoder")
    if text_encoder and te:
        from huggingface_hub import snapshot_download

        echo(f"{te['folder']}/: downloading {te['repo_id']} ...")
        try:
            snapshot_download(repo_id=te["repo_id"], local_dir=str(folder / te["folder"]))
        except Exception as exc:
            raise ModelError(f"Could not download the text encoder {te['repo_id']} ({type(exc).__name__}).",
                             f"Download it by hand into {folder / te['folder']}.") from None
    problems = verify(entry, folder)
    if problems:
        raise ModelError(f"Downloaded {entry.name} to {folder} but: {'; '.join(problems)}.",
                         manual_steps(entry, folder))
    return folder


def list_models() -> list[dict]:
    """One row per catalog or registered model: name, architecture, status, path, description."""
    rows = []
    regs = registered()
    cat = load_catalog()
    for name, e in cat.items():
        try:
            path, status = str(model_path(name)), "ready"
        except ModelError:
            path, status = "", "not built" if e.architecture == "bundled" else "not downloaded"
        rows.append({"name": name, "architecture": e.architecture, "status": status, "path": path,
                     "description": e.description})
    for name, p in regs.items():
        if _find(name, cat) is None:
            rows.append({"name": name, "architecture": "folder",
                         "status": "ready" if Path(p).is_dir() else "missing", "path": p,
                         "description": "registered folder"})
    return rows


# -- folder description and engine loading ------------------------------------------------
def describe_folder(folder: Path, entry: ModelEntry | None = None) -> dict:
    """The manifest of a model folder: ``textseg-model.json`` or inferred from files."""
    m = folder / MANIFEST
    if m.is_file():
        try:
            man = json.loads(m.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelError(f"{m}: invalid JSON ({exc}).", "Fix the manifest.") from None
    elif (entry is not None and entry.architecture == "voxtell") or (
            (folder / "plans.json").is_file() and (folder / "fold_0" / "checkpoint_final.pth").is_file()):
        man = {"architecture": "voxtell"}  # a VoxTell release folder (plans.json + fold_0/)
        for need in ("plans.json", "fold_0/checkpoint_final.pth"):
            if not (folder / need).is_file():
                raise ModelError(f"{folder}: the VoxTell file {need} is missing.",
                                 "Run `textseg models pull VoxTell`, or copy the release's plans.json and "
                                 "fold_0/checkpoint_final.pth into the folder.")
    elif (entry is not None and entry.architecture == "bundled") or (
            (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
        man = {"architecture": "bundled"}  # textseg-mini layout (``textseg train --out``)
    elif entry is not None and entry.architecture == "sat":
        roles = {}
        for f in entry.files:  # the catalog name, else a file named like one of the alternatives
            names = [f.name] + [Path(a).name for a in f.alternatives]
            roles[f.role] = next((n for n in names if (folder / n).is_file()), f.name)
        man = {"architecture": "sat", "variant": entry.variant, "checkpoint": roles.get("checkpoint"),
               "queries": {"type": "text_encoder", "file": roles.get("text_encoder"),
                           "tokenizer": entry.tokenizer}, "inference": entry.inference}
    else:
        ckpts = [n for n in ("nano.pth", "pro.pth", "SAT_Nano.pth", "SAT_Pro.pth") if (folder / n).is_file()]
        if not ckpts:
            raise ModelError(f"{folder}: no {MANIFEST} and no SAT checkpoint (nano.pth / pro.pth) found.",
                             f"Put the model files there, or write a {MANIFEST} describing them.")
        man = {"architecture": "sat", "variant": "pro" if "pro" in ckpts[0].lower() else "nano",
               "checkpoint": ckpts[0], "queries": {"type": "text_encoder", "file": "text_encoder.pth"}}
    if man.get("architecture") not in ("sat", "bundled", "voxtell"):
        raise ModelError(f"{folder}: unknown architecture {man.get('architecture')!r}.", "Use 'sat'.")
    for key in ("checkpoint",):
        if man.get("architecture") == "sat" and not (folder / str(man.get(key))).is_file():
            raise ModelError(f"{folder}: the {key} file {man.get(key)!r} is missing.",
                             "Copy the file into the folder (see `textseg models list`).")
    return man


def sat_vocabulary() -> dict[str, list[str]]:
    """SAT's 497 training terms per modality (SAT-DS terminology_list.json, copied unchanged)."""
    try:
        data = json.loads(resource_path("models", "sat-terminology.json").read_text(encoding="utf-8"))
    except Exception:  # the vocabulary is informative only
        return {}
    out: dict[str, list[str]] = {}
    for item in data.get("all", []):
        mod, _, term = item.partition("_")
        out.setdefault(mod, []).append(term)
    return out


def default_model_name() -> str:
    """``$TEXTSEG_MODEL``, else SAT-Nano when it is installed, else the bundled textseg-mini."""
    env = os.environ.get("TEXTSEG_MODEL")
    if env:
        return env
    try:
        model_path("SAT-Nano")
        return "SAT-Nano"
    except ModelError:
        return "textseg-mini"


def _bundled_engine(device: str, folder: Path | None = None):
    try:
        from .bundled import load_bundled_engine  # type: ignore[attr-defined]
    except ImportError:
        raise ModelError("The bundled model textseg-mini is not part of this installation.",
                         "Install a SAT model: textseg models pull SAT-Nano (or register a folder).") from None
    return load_bundled_engine(folder, device=device)


def load_engine(name: str | None = None, path: str | os.PathLike | None = None,
                device: str = "auto", precision: str = "auto"):
    """An Engine for catalog/registered model ``name`` or the model folder ``path``."""
    entry = None
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelError(f"{folder}: model folder not found.", "Pass the folder that holds the model files.")
    else:
        name = name or default_model_name()
        key = _find(name, load_catalog())
        entry = load_catalog()[key] if key else None
        if entry is not None and entry.architecture == "bundled" and _find(name, registered()) is None:
            return _bundled_engine(device)
        folder = model_path(name)
    man = describe_folder(folder, entry)
    if man["architecture"] == "bundled":
        return _bundled_engine(device, folder)
    if man["architecture"] == "voxtell":
        from .voxtell import load_voxtell_engine

        return load_voxtell_engine(folder, device=device, name=(entry.name if entry else folder.name))
    return _sat_engine(folder, man, device, precision, name=(entry.name if entry else man.get("name", folder.name)))


def _sat_engine(folder: Path, man: dict, device: str, precision: str, name: str):
    from ..engine.preprocess import PreprocessConfig, parse_spacing
    from ..engine.sat_engine import EncoderQueries, InferenceConfig, SATEngine, TableQueries
    from .sat import build_sat, load_sat_checkpoint

    model = build_sat(man.get("variant", "nano"), **man.get("overrides", {}))
    load_sat_checkpoint(model, folder / man["checkpoint"])
    q = man.get("queries") or {}
    if q.get("type") == "table":
        provider = TableQueries.load(folder / q["file"])
    else:
        from .sat.text import build_sat_text_encoder, load_text_encoder_checkpoint

        te = folder / str(q.get("file") or "text_encoder.pth")
        if not te.is_file():
            raise ModelError(f"{folder}: text encoder {te.name} is missing.",
                             "Copy text_encoder.pth from the model's download page into the folder.")
        tok = folder / "tokenizer"
        enc = build_sat_text_encoder(tok if tok.is_dir() else None)
        load_text_encoder_checkpoint(enc, te)
        provider = EncoderQueries(enc, vocabulary=sat_vocabulary())
    inf = man.get("inference") or {}
    pre = PreprocessConfig(
        spacing=parse_spacing(inf.get("spacing", (1.0, 1.0, 3.0))),
        normalisation=inf.get("normalisation", "auto"),
    )
    patch = tuple(int(v) for v in inf.get("patch_size", model.config.patch_size))
    cfg = InferenceConfig(preprocess=pre, patch_size=patch, threshold=float(inf.get("threshold", 0.5)),
                          device=device, precision=precision)
    return SATEngine(model, provider, cfg, name=name)


def model_vocabulary(name: str | None = None, path: str | os.PathLike | None = None) -> tuple[str, dict[str, list[str]], bool]:
    """``(model name, {modality: trained terms}, free_text)`` of a model without loading its weights.

    textseg-mini's terms come from its ``config.json``; a SAT model's are SAT's vocabulary (its
    text tower also encodes free text); a query-table model knows only its table's terms."""
    entry = None
    if path is not None:
        folder = Path(path).expanduser()
        label = folder.name
    else:
        name = name or default_model_name()
        key = _find(name, load_catalog())
        entry = load_catalog()[key] if key else None
        label = entry.name if entry else name
        if entry is not None and entry.architecture == "bundled" and _find(name, registered()) is None:
            folder = resource_path(*Path(entry.source["path"]).parts, must_exist=False)
        else:
            try:
                folder = model_path(name)
            except ModelError:
                if entry is not None and entry.architecture == "sat":  # not downloaded: SAT's terms are known
                    return label, sat_vocabulary(), True
                if entry is not None and entry.architecture == "voxtell":  # no bank yet: free text only
                    return label, {}, True
                raise
    man = describe_folder(folder, entry)
    if man["architecture"] == "voxtell":
        from .voxtell import folder_vocabulary

        terms = folder_vocabulary(folder)
        return label, {m: terms for m in ("ct", "mri", "pet")}, True
    if man["architecture"] == "bundled":
        try:
            cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
            return label, {m: list(t) for m, t in cfg.get("concepts", {}).items()}, False
        except (OSError, ValueError) as exc:
            raise ModelError(f"{folder / 'config.json'}: unreadable ({exc}).", "Reinstall the model.") from None
    q = man.get("queries") or {}
    if q.get("type") == "table":
        from ..engine.sat_engine import TableQueries

        table = TableQueries.load(folder / q["file"])
        return label, {m: table.vocabulary(m) for m in table.table}, False
    return label, sat_vocabulary(), True
