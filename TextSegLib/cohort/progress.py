"""The cohort progress bar: cases done, failed and remaining, with an ETA."""
from __future__ import annotations

import sys
import time


class Progress:
    """A tqdm bar over the cases of this run (silent when disabled or not on a terminal)."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.failed = total, 0, 0
        self.t0 = time.perf_counter()
        self.bar = None
        self.enabled = enabled
        if enabled and total and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", desc="cohort", dynamic_ncols=True)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"done {self.done} · failed {self.failed} · remaining {self.remaining}")

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def counts(self) -> dict:
        return {"done": self.done, "failed": self.failed, "remaining": self.remaining}

    def eta(self) -> float | None:
        n = self.done + self.failed
        if not n:
            return None
        return (time.perf_counter() - self.t0) / n * self.remaining

    def update(self, record: dict) -> None:
        if record.get("state") == "done":
            self.done += 1
        else:
            self.failed += 1
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()
        elif self.enabled and self.total:
            eta = self.eta()
            print(f"[{self.done + self.failed}/{self.total}] {record.get('case_id')}: {record.get('state')}"
                  + (f" ({record.get('error')})" if record.get("error") else "")
                  + (f"; ETA {eta:.0f} s" if eta is not None else ""), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
