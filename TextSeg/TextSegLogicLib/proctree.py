"""End a child process together with everything it started, and check that nothing is left.

Inside Slicer, ``sys.executable`` and ``PythonSlicer`` are CTK's application launcher
(commontk/AppLauncher ``Base/ctkAppLauncher.cpp``): it starts the real interpreter
(``python-real``) as a child with ``QProcess`` and installs no signal handler, so a
signal to the launcher never reaches the interpreter, which then keeps the model in
RAM/VRAM. Hence:

* children are started in their own session (:func:`~.child_env.popen_options`), and
  :func:`kill_tree` signals the whole process group (SIGTERM, then SIGKILL after a
  grace period), plus any descendant that left the group, found by walking the
  process table (``/proc`` on Linux, ``ps`` elsewhere; psutil is not needed);
* on Windows it runs ``taskkill /T /F /PID pid`` (the tree, forced).

For benchmarks and tests, :func:`snapshot` records a tree while it runs and
:func:`leftovers` says, after a stop, which of its processes are still alive and which
ports are still bound::

    tree = snapshot(process.pid); process.stop()
    print(leftovers([tree], [port]) or "nothing left")
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .child_env import popen_options


@dataclass(frozen=True)
class ProcInfo:
    """One row of the process table."""

    pid: int
    ppid: int
    pgid: int
    start: str  # start time as the table gives it: tells a reused PID apart
    state: str
    name: str = ""

    def __str__(self) -> str:
        return f"PID {self.pid} ({self.name or '?'})"


def _linux_table() -> dict[int, ProcInfo]:
    table: dict[int, ProcInfo] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name = text[text.find("(") + 1:text.rfind(")")]
        f = text[text.rfind(")") + 2:].split()
        table[int(entry.name)] = ProcInfo(int(entry.name), int(f[1]), int(f[2]), f[19], f[0], name)
    return table


def _ps_table() -> dict[int, ProcInfo]:
    out = subprocess.run(["ps", "-A", "-o", "pid=,ppid=,pgid=,stat=,comm=,lstart="], capture_output=True,
                         text=True, env=dict(os.environ, LC_ALL="C")).stdout
    table: dict[int, ProcInfo] = {}
    for row in out.splitlines():
        f = row.split()
        if len(f) >= 10 and f[0].isdigit():
            table[int(f[0])] = ProcInfo(int(f[0]), int(f[1]), int(f[2]), " ".join(f[-5:]), f[3][:1],
                                        " ".join(f[4:-5]))
    return table


def process_table(use_ps: bool = False) -> dict[int, ProcInfo]:
    """Every process of this machine by PID (POSIX; empty on Windows)."""
    if os.name == "nt":
        return {}
    return _ps_table() if use_ps or not sys.platform.startswith("linux") else _linux_table()


def descendants(pid: int, table: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
    """The children of ``pid``, their children, and so on (not ``pid`` itself)."""
    table = process_table() if table is None else table
    children: dict[int, list[ProcInfo]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info)
    found, seen, todo = [], {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                found.append(child)
                todo.append(child.pid)
    return found


@dataclass(frozen=True)
class Tree:
    """A process and its descendants at one moment (:func:`snapshot`)."""

    root: int
    members: tuple[ProcInfo, ...] = ()

    def alive(self, table: dict[int, ProcInfo] | None = None) -> list[ProcInfo]:
        """Members still running: same PID and start time, not a zombie."""
        table = process_table() if table is None else table
        return [m for m in self.members
                if (t := table.get(m.pid)) is not None and t.start == m.start and t.state not in ("Z", "X")]

    def merged(self, other: "Tree") -> "Tree":
        known = {(m.pid, m.start) for m in self.members}
        return Tree(self.root, self.members + tuple(m for m in other.members if (m.pid, m.start) not in known))


def snapshot(pid: int, group_only: bool = False) -> Tree:
    """``pid``, its descendants, and the members of its process group if it leads one.

    ``group_only``: ``pid`` has exited and been reaped, so the PID may belong to another
    program by now; only its group (a group ID is not reused while it has members) counts."""
    table = process_table()
    members = [] if group_only or pid not in table else [table[pid]]
    if not group_only:
        members += descendants(pid, table)
    pids = {m.pid for m in members}
    members += [m for m in table.values() if m.pgid == pid and m.pid not in pids]
    return Tree(pid, tuple(members))


def taskkill_command(pid: int) -> list[str]:
    """Windows: end ``pid`` and all its descendants, forced."""
    return ["taskkill", "/T", "/F", "/PID", str(int(pid))]


def _signal(tree: Tree, sig: int) -> None:
    table = process_table()
    live = tree.alive(table)
    if any(m.pgid == tree.root for m in live):
        try:
            os.killpg(tree.root, sig)
        except OSError:
            pass
    for m in live:
        if m.pgid != tree.root:  # left the group (setsid of its own): signal it by PID
            try:
                os.kill(m.pid, sig)
            except OSError:
                pass


def _wait_gone(proc: subprocess.Popen, tree: Tree, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while True:
        proc.poll()  # reap the root as soon as it exits
        if proc.returncode is not None and not tree.alive():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


def kill_tree(proc: subprocess.Popen, grace_s: float = 5.0, *, windows: bool | None = None,
              run: Callable[..., Any] = subprocess.run, startupinfo_factory: Callable[[], Any] | None = None) -> Tree:
    """End ``proc`` and its descendants: SIGTERM to the group, SIGKILL to what is left after
    ``grace_s``; Windows: ``taskkill /T /F`` (with a hidden console). Returns the tree as it was
    before. ``windows``, ``run`` and ``startupinfo_factory`` let tests build the Windows call."""
    if os.name == "nt" if windows is None else windows:
        if proc.poll() is None:
            try:
                run(taskkill_command(proc.pid), capture_output=True, timeout=30, **popen_options(True, startupinfo_factory))
            except (OSError, subprocess.SubprocessError):
                proc.kill()  # taskkill missing or hung: at least the launcher
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return Tree(proc.pid)
    reaped = proc.poll() is not None
    tree = snapshot(proc.pid, group_only=reaped)  # before any signal: a dead launcher's children are reparented
    if not tree.members:
        return tree
    _signal(tree, signal.SIGTERM)
    if not _wait_gone(proc, tree, grace_s):
        tree = tree.merged(snapshot(proc.pid, group_only=proc.returncode is not None))  # started meanwhile
        _signal(tree, signal.SIGKILL)
        _wait_gone(proc, tree, 5.0)
    return tree


def port_bound(port: int, host: str = "127.0.0.1") -> bool:
    """True while something listens on (or holds) ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT after a close does not count
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def leftovers(trees: Iterable[Tree], ports: Iterable[int] = (), wait_s: float = 10.0) -> list[str]:
    """What is still alive or bound ``wait_s`` after a stop, one line each (empty: nothing)."""
    trees, ports = list(trees), [p for p in ports if p]
    end = time.monotonic() + wait_s
    while True:
        table = process_table()
        found = [f"{m} still running (root {t.root})" for t in trees for m in t.alive(table)]
        found += [f"port {p} still bound" for p in ports if port_bound(p)]
        if not found or time.monotonic() >= end:
            return found
        time.sleep(0.1)
