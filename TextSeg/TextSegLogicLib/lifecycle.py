"""Connections the module widget makes to objects that outlive it, undone in its cleanup.

``slicer.app.aboutToQuit`` and the layout manager's ``layoutChanged`` live as long as the
application. A slot connected there and never disconnected keeps the old widget (and its
logic) alive after the module is reloaded, and runs it a second time. Qt signals (PythonQt's
``signal.connect`` / ``signal.disconnect``) take the very callable that was connected, so each
one is kept here until :meth:`Connections.disconnect_all`.
"""
from __future__ import annotations

from typing import Any, Callable


class Connections:
    """Signal -> slot connections made through :meth:`connect`, all undone by :meth:`disconnect_all`."""

    def __init__(self) -> None:
        self._made: list[tuple[Any, Callable[..., Any]]] = []

    def __len__(self) -> int:
        return len(self._made)

    def connect(self, signal: Any, slot: Callable[..., Any]) -> None:
        signal.connect(slot)
        self._made.append((signal, slot))

    def disconnect_all(self) -> None:
        """Disconnect every slot (an object already deleted by Qt is skipped)."""
        while self._made:
            signal, slot = self._made.pop()
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError, ValueError):  # the sender is gone (application exit)
                pass
