"""Model licences in the model selector: the one-line licence and the download sizes, consent asked once.

A model whose weights carry a licence to accept (VoxTell: CC-BY-NC-SA-4.0, non-commercial,
share-alike) shows that line, and the size of every part, before its download starts. The
user is asked once; the answer is the CLI's own record (``$TEXTSEG_HOME/consent.json``,
:func:`TextSegLib.models.catalog.consented`), so accepting here or with
``textseg models pull`` counts for both, and the download child process
(``textseg models pull NAME``, no terminal) then runs without asking again.
"""
from __future__ import annotations

from typing import Callable

from .engines import CHOICES

#: ``ask(model name, notice) -> accepted``; the Slicer widget shows a dialog, tests pass a function.
AskLicence = Callable[[str, str], bool]


def _entry(key: str):
    from TextSegLib.errors import ModelError
    from TextSegLib.models.catalog import get_entry

    name = CHOICES.get(key, ("", None))[1]
    if not name:
        return None
    try:
        return get_entry(name)
    except ModelError:
        return None


def needs_licence(key: str) -> bool:
    """Whether the selector's model ``key`` has weights whose licence must be accepted first."""
    e = _entry(key)
    return e is not None and e.architecture == "voxtell" and bool(e.license)


def licence_line(key: str) -> str:
    """The one-line licence of ``key``'s weights ("" when none needs accepting)."""
    e = _entry(key)
    return e.license if e is not None and needs_licence(key) else ""


def download_sizes(key: str) -> str:
    """What a download of ``key`` fetches, with sizes, in one line ("" when nothing is known)."""
    from TextSegLib.models.catalog import download_plan

    e = _entry(key)
    if e is None or not e.files:
        return ""
    return "Downloads " + "; ".join(line.strip() for line in download_plan(e)) + "."


def notice(key: str) -> str:
    """Licence line and sizes, shown before the download (and in the consent question)."""
    return " ".join(p for p in (licence_line(key), download_sizes(key)) if p)


def consented(key: str) -> bool:
    """True when ``key`` needs no acceptance or the user accepted it already (here or in the CLI)."""
    from TextSegLib.models.catalog import consented as recorded

    return not needs_licence(key) or recorded(str(CHOICES[key][1]))


def ensure_licence(key: str, ask: AskLicence | None) -> bool:
    """True when ``key`` may be downloaded; asks (once: the answer is recorded) when it must.

    No ``ask`` (no dialog to show) is never a silent yes."""
    if consented(key):
        return True
    if ask is None:
        return False
    name = str(CHOICES[key][1])
    if not ask(name, notice(key)):
        return False
    from TextSegLib.models.catalog import record_consent

    record_consent(name, licence_line(key))
    return True


def selector_line(key: str, ok: bool, reason: str) -> str:
    """The line under the model selector: why a model cannot be used yet, and for a model with a
    licence to accept, that licence (and, before its download, the sizes)."""
    first = "" if ok or not reason else reason.split(". ")[0].rstrip(".") + "."
    if not needs_licence(key):
        return first
    return " ".join(p for p in (first, licence_line(key) if ok else notice(key)) if p)


REFUSED = "{name} was not downloaded: its licence was not accepted."
