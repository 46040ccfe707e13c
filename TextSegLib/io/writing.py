"""Write output files atomically, alone or as one set that a kill never leaves half-visible.

Each file is written to a hidden temporary file beside its target
(``.textseg-tmp-<pid>-…``) and renamed onto it. Inside :func:`output_set` the
renames wait until every file of the set is written; just before them a small
marker ``.textseg-pending-<name>`` (naming the writing process) is put beside
each target and removed after the last rename. A run killed between the
renames thus leaves markers of a dead process: a re-run treats those targets as
its own unfinished work and completes the set without ``--overwrite``.
Temporary files and markers of dead TextSeg processes are removed when a
later run writes beside them.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from ..errors import OutputPathError

TEMP_PREFIX = ".textseg-tmp-"
PENDING_PREFIX = ".textseg-pending-"
_TEMP_RE = re.compile(r"^\.textseg-(?:tmp|pending)-(\d+)-")
#: hidden temporary files of TextSeg versions before the pid was in the name (``.textseg-`` + 8 random
#: characters): removed once they are this old (a live write finishes long before).
_LEGACY_RE = re.compile(r"^\.textseg-[a-z0-9_]{8}(?:\.[A-Za-z.]+)?$")
_LEGACY_AGE_S = 3600.0


def _default_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _default_mode()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _pending_marker(target: Path) -> Path:
    return target.with_name(f"{PENDING_PREFIX}{os.getpid()}-{target.name}")


def _pending_of(target: Path) -> list[Path]:
    """Markers beside ``target`` that name it (any process)."""
    try:
        return [q for q in target.parent.glob(f"{PENDING_PREFIX}*-{glob_escape(target.name)}")
                if q.name.endswith("-" + target.name)]
    except OSError:
        return []


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def left_by_interrupted_run(target: Path) -> bool:
    """True if ``target`` was renamed into place by a TextSeg run that died before its set was complete."""
    for q in _pending_of(target):
        m = _TEMP_RE.match(q.name)
        if m and not _alive(int(m.group(1))):
            return True
    return False


def clean_stale(folder: Path) -> list[str]:
    """Remove TextSeg's own temporary files of dead processes in ``folder``; returns their names.
    Markers are kept while their target exists (they say the set is incomplete)."""
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    now = time.time()
    for q in entries:
        name = q.name
        if not name.startswith(".textseg-"):
            continue
        m = _TEMP_RE.match(name)
        try:
            if m:
                if _alive(int(m.group(1))):
                    continue
                if name.startswith(PENDING_PREFIX) and (folder / name.split("-", 3)[-1]).exists():
                    continue
            elif not (_LEGACY_RE.match(name) and q.is_file() and now - q.stat().st_mtime > _LEGACY_AGE_S):
                continue
            q.unlink()
            removed.append(name)
        except OSError:
            continue
    return removed


def check_output_path(path: str | os.PathLike, overwrite: bool = False,
                      formats: dict[str, str] | None = None) -> Path:
    """Fail early (before heavy work) if ``path`` cannot be written; returns it as a Path.

    ``formats`` maps the accepted extensions (``.nii.gz`` kept whole) to names."""
    from .volumes import WRITE_FORMATS, extension

    p = Path(path).expanduser()
    formats = WRITE_FORMATS if formats is None else formats
    if p.is_dir():
        raise OutputPathError(f"{p}: is a folder, not a file name.", "Give a file name inside it.")
    ext = extension(p) if not p.name.lower().endswith(".seg.nrrd") else ".seg.nrrd"
    if ext not in formats and extension(p) not in formats:
        raise OutputPathError(
            f"{p}: cannot write file type {ext or '(no extension)'!r}.",
            "Use one of: " + ", ".join(sorted(formats)) + ".",
        )
    if p.exists() and not overwrite and not left_by_interrupted_run(p):
        raise OutputPathError(f"{p}: already exists; TextSeg does not overwrite files.",
                              "Choose a new name, or pass --overwrite to replace it.")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"{p}: the folder {parent} does not exist.", "Create it first or choose another folder.")
    try:
        fd, probe = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"{p}: the folder {parent} is not writable ({exc.strerror}).",
                              "Choose a folder you can write to.") from None
    clean_stale(parent)
    return p


def atomic_replace(tmp: str | os.PathLike, target: Path) -> None:
    """Move a finished temporary file onto ``target`` with normal file permissions
    (``mkstemp`` creates files readable by their owner only)."""
    os.chmod(tmp, _FILE_MODE)
    os.replace(tmp, target)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _test_pause() -> float:
    """Seconds to sleep after each staged file and each rename (``TEXTSEG_TEST_WRITE_PAUSE``, a hook
    for the kill tests that time a SIGKILL to the write step; unset in normal use)."""
    try:
        return max(0.0, float(os.environ.get("TEXTSEG_TEST_WRITE_PAUSE", "") or 0))
    except ValueError:
        return 0.0


class OutputSet:
    """Finished temporary files waiting to be renamed onto their targets together."""

    def __init__(self) -> None:
        self.staged: list[tuple[str, Path]] = []
        self.after_commit: list[Callable[[], None]] = []  # e.g. a PACS push of a file of the set

    def commit(self) -> None:
        markers = []
        try:
            names = [str(t) for _, t in self.staged]
            for _, target in self.staged:
                marker = _pending_marker(target)
                marker.write_text(json.dumps({"pid": os.getpid(), "set": names}), encoding="utf-8")
                markers.append(marker)
            pause = _test_pause()
            for tmp, target in self.staged:
                atomic_replace(tmp, target)
                for old in _pending_of(target):
                    if old not in markers:
                        old.unlink(missing_ok=True)  # the interrupted run's marker: its file is now ours
                if pause:
                    time.sleep(pause)
            self.staged = []
        except OSError as exc:
            raise OutputPathError(f"writing the output files failed ({exc.strerror or exc}).",
                                  "Check free disk space and permissions.") from None
        finally:
            for marker in markers:
                with contextlib.suppress(OSError):
                    marker.unlink()

    def discard(self) -> None:
        for tmp, _ in self.staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.staged = []


_CURRENT: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar("textseg_output_set", default=None)


@contextlib.contextmanager
def output_set() -> Iterator[OutputSet]:
    """Files written by :func:`write_atomically` inside this block appear together at its end
    (or not at all if it raises)."""
    outer = _CURRENT.get()
    if outer is not None:  # nested: the outer set commits
        yield outer
        return
    staged = OutputSet()
    token = _CURRENT.set(staged)
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    else:
        staged.commit()
    finally:
        _CURRENT.reset(token)
    for action in staged.after_commit:  # the files are in place now
        action()


def after_output_set(action: Callable[[], None]) -> None:
    """Run ``action`` once the enclosing :func:`output_set` has put its files in place (at once
    outside one)."""
    staged = _CURRENT.get()
    if staged is None:
        action()
    else:
        staged.after_commit.append(action)


def write_atomically(path: str | os.PathLike, write: Callable[[str], None], suffix: str = "") -> Path:
    """Have ``write(tmp)`` fill a hidden temporary file beside ``path``, flush it to disk, then
    rename it onto ``path`` (at the end of the enclosing :func:`output_set`, if any): readers see
    the old file or the whole new one, never a part, and a failed write leaves nothing behind.
    An ``OSError`` becomes a one-line :class:`OutputPathError`."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix or "".join(p.suffixes[-2:]),
                               dir=p.parent)
    os.close(fd)
    staged = _CURRENT.get()
    keep = False
    try:
        write(tmp)
        _fsync(tmp)
        if staged is not None:
            staged.staged.append((tmp, p))
            keep = True
            if pause := _test_pause():
                time.sleep(pause)
        else:
            atomic_replace(tmp, p)
    except OSError as exc:
        raise OutputPathError(f"{p}: writing failed ({exc.strerror or exc}).",
                              "Check free disk space and permissions.") from None
    finally:
        if not keep and os.path.exists(tmp):
            os.unlink(tmp)
    return p
