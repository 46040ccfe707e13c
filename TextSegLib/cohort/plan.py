"""Up-front planning of a run: the model's identity, and every prompt resolved once per
modality before any case starts (an unresolvable prompt stops the run here)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ModalityError, TerminologyError
from .inputs import CaseSpec
from .worker import EngineSpec, PromptTable

ALL_MODALITIES = ("ct", "mri", "pet")


@dataclass
class EngineFacts:
    """What prompt resolution needs to know about an engine, without the engine (picklable;
    a worker reports it, the coordinator resolves with it)."""

    name: str
    free_text: bool
    modalities: tuple[str, ...] | None
    terms: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, engine) -> "EngineFacts":
        mods = getattr(engine, "modalities", None)
        terms = {}
        for m in (mods or ALL_MODALITIES):
            try:
                terms[m] = list(engine.vocabulary(m))
            except Exception:  # an engine without a vocabulary: any term
                terms[m] = []
        return cls(str(getattr(engine, "name", "model")), bool(getattr(engine, "free_text", True)),
                   tuple(mods) if mods else None, terms)

    def vocabulary(self, modality: str) -> list[str]:
        return list(self.terms.get(modality, []))


def model_folder(spec: EngineSpec) -> Path | None:
    """The folder the worker loads its model from (``None`` when it cannot be told)."""
    from ..models.catalog import default_model_name, model_path

    if spec.model_path:
        return Path(spec.model_path).expanduser()
    try:
        return model_path(spec.model or default_model_name())
    except Exception:
        return None


def model_identity(spec: EngineSpec) -> dict:
    """Model name and a version fingerprint (hash of the model folder's file names, sizes and
    small config files), plus the TextSeg version: what every case record carries."""
    from .. import __version__
    from ..models.catalog import default_model_name

    folder = model_folder(spec)
    h = hashlib.sha256()
    if folder is not None and folder.is_dir():
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(folder)}:{f.stat().st_size}\n".encode())
                if f.suffix in (".json", ".txt") and f.stat().st_size < 1 << 20:
                    h.update(f.read_bytes())
    name = spec.model or (folder.name if spec.model_path and folder else default_model_name())
    return {"model": name, "model_version": h.hexdigest()[:16], "textseg_version": __version__}


def _resolve(texts: Sequence[str], facts: EngineFacts, modality: str):
    from ..knowledge.resolved import engine_resolution_args, resolve_prompts

    return resolve_prompts(list(texts), modality=modality, **engine_resolution_args(facts, modality))


def prompt_table(texts: Sequence[str], facts: EngineFacts, explicit: set[str], guessed: bool,
                 warn=lambda s: None, skip_unknown: bool = False) -> PromptTable:
    """Resolve ``texts`` for each modality a case may have. ``explicit``: modalities given by the
    user (any failure there stops the run); ``guessed``: some cases' modality will be guessed at
    read time, so every modality the engine knows is planned, a prompt failing in some of them is
    reported as not found there, and one failing in all of them stops the run. ``skip_unknown``:
    a prompt the model does not know in an explicit modality is set aside (``skipped``) instead
    of stopping the run, unless no prompt is left."""
    from ..knowledge.prompts import split_prompts
    from ..knowledge.resolved import AmbiguousPromptError

    items: list[str] = []
    for t in texts:
        items += [s for s in split_prompts(t) if s not in items]
    if not items:
        raise TerminologyError("No prompt given.", "Name at least one structure with -p, e.g. -p liver.")
    table = PromptTable()
    for m in sorted(explicit):
        if not skip_unknown:
            table.prompts[m] = _resolve(items, facts, m)  # raises: the run stops before any case
            continue
        from ..knowledge.resolved import UnknownTermError

        ok, bad = [], {}
        for t in items:
            try:
                _resolve([t], facts, m)
                ok.append(t)
            except UnknownTermError as exc:
                bad[t] = exc.message
        table.prompts[m] = _resolve(ok or items, facts, m)  # none left: the first refusal stands
        if bad:
            table.skipped[m] = bad
            table.set_aside.update(bad)
            for t, why in bad.items():
                warn(f"skipped {t!r} in {m.upper()} scans: {why}")
    if guessed:
        failures: dict[str, dict[str, str]] = {m: {} for m in explicit}
        for m in [m for m in (facts.modalities or ALL_MODALITIES) if m not in explicit]:
            ok, bad = [], {}
            for t in items:
                try:
                    _resolve([t], facts, m)
                    ok.append(t)
                except AmbiguousPromptError:
                    raise
                except ModalityError as exc:
                    table.errors[m] = str(exc)
                    break
                except TerminologyError as exc:
                    bad[t] = exc.message
            if m in table.errors:
                continue
            failures[m] = bad
            if ok:
                table.prompts[m] = _resolve(ok, facts, m)
            if bad:
                table.skipped[m] = bad
            else:
                table.skipped.pop(m, None)
            if not ok:
                table.errors[m] = "; ".join(bad.values())
        for t in items:
            per = [failures[m][t] for m in failures if t in failures[m]]
            if failures and len(per) == len(failures):
                raise TerminologyError(f"Prompt {t!r} cannot be segmented in any modality: {per[0]}",
                                       "Fix or remove the prompt; `textseg terms TEXT` shows the terms the model knows.")
        for m, bad in table.skipped.items():
            if m in explicit:  # set aside by skip_unknown, reported above
                continue
            for t, why in bad.items():
                warn(f"{t!r} cannot be segmented in {m.upper()} scans ({why}); such cases report it as not found. "
                     "Give --modality (or a modality column) to make this an error.")
    return table


def plan_tables(cases: Sequence[CaseSpec], prompts: Sequence[str], run_modality: str, facts: EngineFacts,
                warn=lambda s: None, skip_unknown: bool = False) -> dict[tuple[str, ...], PromptTable]:
    """One :class:`PromptTable` per distinct prompt set (``()`` = the run's ``-p`` prompts)."""
    groups: dict[tuple[str, ...], list[CaseSpec]] = {}
    for c in cases:
        groups.setdefault(tuple(c.prompts), []).append(c)
    out = {}
    for key, members in groups.items():
        texts = list(key) or list(prompts)
        if not texts:
            raise TerminologyError("No prompt given (and the manifest's rows name none).",
                                   "Give -p STRUCTURE (repeatable) or --prompts-file, or fill the prompts column.")
        explicit = {c.modality or run_modality for c in members if c.modality or run_modality}
        guessed = any(not (c.modality or run_modality) for c in members)
        out[key] = prompt_table(texts, facts, explicit, guessed, warn, skip_unknown)
    return out
