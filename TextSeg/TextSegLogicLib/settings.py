"""Persistent user choices (server history, upload consent, device), Qt-free.

The store is any string mapping: a dict in tests, a QSettings adapter in
Slicer (see TextSegPanelLib.controller.QSettingsStore).
"""
from __future__ import annotations

import json
from typing import Callable, MutableMapping

PREFIX = "TextSeg/"
MAX_HISTORY = 10


class TextSegSettings:
    """Typed view over a string store."""

    def __init__(self, store: MutableMapping[str, str] | None = None) -> None:
        self.store: MutableMapping[str, str] = store if store is not None else {}

    def _get(self, key: str, default: str = "") -> str:
        v = self.store.get(PREFIX + key)
        return default if v is None else str(v)

    def _set(self, key: str, value: str) -> None:
        self.store[PREFIX + key] = value

    @property
    def device(self) -> str:
        return self._get("device", "auto")

    @device.setter
    def device(self, value: str) -> None:
        self._set("device", value)

    @property
    def model_dir(self) -> str:
        return self._get("modelDir")

    @model_dir.setter
    def model_dir(self, value: str) -> None:
        self._set("modelDir", value)

    @property
    def engine_python(self) -> str:
        """The interpreter the engine process runs on ("" = Slicer's own Python)."""
        return self._get("enginePython")

    @engine_python.setter
    def engine_python(self, value: str) -> None:
        self._set("enginePython", value.strip())

    def server_history(self) -> list[str]:
        try:
            urls = json.loads(self._get("serverHistory", "[]"))
        except ValueError:
            return []
        return [u for u in urls if isinstance(u, str)]

    def remember_server(self, url: str) -> list[str]:
        """Put ``url`` first in the recent-servers list (at most 10, no repeats)."""
        url = url.strip().rstrip("/")
        if not url:
            return self.server_history()
        urls = [url] + [u for u in self.server_history() if u != url]
        self._set("serverHistory", json.dumps(urls[:MAX_HISTORY]))
        return urls[:MAX_HISTORY]

    def upload_consent(self, url: str) -> bool:
        return url.rstrip("/") in json.loads(self._get("uploadConsent", "[]"))

    def set_upload_consent(self, url: str) -> None:
        urls = set(json.loads(self._get("uploadConsent", "[]"))) | {url.rstrip("/")}
        self._set("uploadConsent", json.dumps(sorted(urls)))


#: ``ask(url) -> (allowed, dont_ask_again)``; the Slicer widget shows a dialog.
AskConsent = Callable[[str], "tuple[bool, bool]"]


def ensure_upload_consent(settings: TextSegSettings, url: str, ask: AskConsent) -> bool:
    """True when image data may be sent to ``url``; asks unless the user said 'don't ask again'."""
    if settings.upload_consent(url):
        return True
    allowed, remember = ask(url)
    if allowed and remember:
        settings.set_upload_consent(url)
    return bool(allowed)
