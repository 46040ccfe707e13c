"""Uploaded scans, kept once under their content hash in an LRU cache with a memory cap.

An image is stored compressed (as it arrived, or blosc2 if it arrived raw) and
decompressed for each job that uses it; a job holds its own volume while queued and
running, so evicting an image never breaks a job already accepted.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..volume import Volume
from . import protocol


@dataclass
class StoredImage:
    id: str
    geometry: dict[str, Any]
    codec: str
    data: bytes
    raw_bytes: int
    created: float = field(default_factory=time.time)
    uses: int = 0

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "shape": self.geometry["shape"], "dtype": self.geometry["dtype"],
                "stored_bytes": len(self.data), "raw_bytes": self.raw_bytes, "codec": self.codec, "uses": self.uses}


class ImageStore:
    """Thread-safe LRU of :class:`StoredImage` within ``max_bytes`` of compressed data."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[str, StoredImage] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(len(i.data) for i in self._items.values())

    def __contains__(self, image_id: str) -> bool:
        with self._lock:
            return image_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def put(self, image_id: str, geometry: dict[str, Any], raw: bytes, codec: str,
            compressed: bytes | None = None) -> tuple[StoredImage, bool]:
        """Store an image (compressing ``raw`` unless ``compressed`` is given); (image, was it new)."""
        with self._lock:
            old = self._items.get(image_id)
            if old is not None:
                self._items.move_to_end(image_id)
                return old, False
        if compressed is None or codec == "none":
            codec = protocol.DEFAULT_CODEC
            import numpy as np

            compressed = protocol.compress_bytes(raw, codec, np.dtype(geometry["dtype"]).itemsize)
        item = StoredImage(image_id, geometry, codec, bytes(compressed), len(raw))
        with self._lock:
            self._items[image_id] = item
            self._items.move_to_end(image_id)
            total = sum(len(i.data) for i in self._items.values())
            while total > self.max_bytes and len(self._items) > 1:
                _, dropped = self._items.popitem(last=False)
                total -= len(dropped.data)
                self.evicted += 1
        return item, True

    def trim(self, max_bytes: int) -> int:
        """Drop least recently used images until at most ``max_bytes`` are held (the memory budget
        needs room); the bytes held after."""
        with self._lock:
            total = sum(len(i.data) for i in self._items.values())
            while total > max(0, max_bytes) and self._items:
                _, dropped = self._items.popitem(last=False)
                total -= len(dropped.data)
                self.evicted += 1
            return total

    def get(self, image_id: str) -> StoredImage | None:
        with self._lock:
            item = self._items.get(image_id)
            if item is not None:
                self._items.move_to_end(image_id)
                item.uses += 1
            return item

    def volume(self, item: StoredImage, modality: str = "") -> Volume:
        """The image decompressed as a :class:`Volume` (its own copy for one job)."""
        expected = item.raw_bytes
        raw = protocol._decompress(memoryview(item.data), item.codec, expected, f"image {item.id[:12]}")
        return protocol.volume_from_raw(item.geometry, raw, modality, name=f"image {item.id[:12]}")

    def delete(self, image_id: str) -> bool:
        with self._lock:
            return self._items.pop(image_id, None) is not None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"count": len(self._items), "bytes": sum(len(i.data) for i in self._items.values()),
                    "max_bytes": self.max_bytes, "evicted": self.evicted}
