"""Progress of one ``segment`` run on stderr: a tqdm bar on a terminal, else one line per stage.

A log file or a pipe gets ``tiles: 36 of 36 in 9.7 s`` once per stage instead of hundreds of
carriage-return redraws."""
from __future__ import annotations

import sys
import time

import click


class StageProgress:
    """The ``progress(stage, done, total)`` callback of :meth:`Engine.segment`."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == 0 or stage not in self.started:
            self.started.setdefault(stage, now)
        if self.tty and stage == "tiles":
            self._bar(done, total)
            return
        if total and done >= total:
            t = now - self.started.pop(stage, now)
            if not self.tty:
                click.echo(f"{self.label} {stage}: {done} of {total} in {t:.1f} s", err=True)

    def _bar(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, desc=f"{self.label} tiles", unit="tile", leave=False, file=self.stream)
        if done < self.bar.n:  # a new group of prompts starts over the tiles
            self.bar.reset(total)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
