"""The wire format of :mod:`.protocol` made and read piece by piece (for :mod:`.stepped`).

:class:`StreamEncoder` compresses an image payload fed in slabs (the same bytes
``protocol.compress_bytes`` makes in one call, as the server's decoder reads them);
:class:`StreamResultDecoder` inflates a result message and unpacks its masks in bounded
pieces, each :meth:`~StreamResultDecoder.step` a few milliseconds.
"""
from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from .protocol import ProtocolError, unpack_message

INFLATE_BYTES = 2 << 20  # decompressed bytes per step
UNPACK_BYTES = 256 << 10  # packed mask bytes unpacked per step


class StreamEncoder:
    """Compress ``raw_len`` bytes fed in parts with ``codec`` (zlib, zstd or blosc2); ``finish()`` the parts."""

    def __init__(self, codec: str, raw_len: int, itemsize: int = 1) -> None:
        self.codec, self.raw_len = codec, int(raw_len)
        self.parts: list[bytes] = []
        self._buf = bytearray()
        if codec == "zlib":
            self._c: Any = zlib.compressobj(1)
        elif codec == "zstd":
            import zstandard

            self._c = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=self.raw_len)
        elif codec == "blosc2":
            import blosc2

            cparams = {"typesize": max(1, int(itemsize)), "codec": blosc2.Codec.ZSTD, "clevel": 1,
                       "filters": [blosc2.Filter.SHUFFLE]}
            self.chunk = 1 << 20
            self._c = blosc2.SChunk(chunksize=self.chunk, cparams=cparams)
        elif codec != "none":
            raise ValueError(f"unknown codec {codec!r}")

    def feed(self, raw: bytes) -> None:
        if self.codec in ("zlib", "zstd"):
            out = self._c.compress(raw)
            if out:
                self.parts.append(out)
        elif self.codec == "blosc2":
            self._buf += raw
            while len(self._buf) >= self.chunk:
                self._c.append_data(bytes(self._buf[:self.chunk]))
                del self._buf[:self.chunk]
        else:
            self.parts.append(bytes(raw))

    def finish(self) -> list[bytes]:
        """The compressed payload as parts (their concatenation is the payload)."""
        if self.codec in ("zlib", "zstd"):
            self.parts.append(self._c.flush())
        elif self.codec == "blosc2":
            if self._buf:
                self._c.append_data(bytes(self._buf))
                self._buf = bytearray()
            self.parts = [self._c.to_cframe()]  # one copy of the compressed frame (~30 ms per 64 MB)
        return self.parts


class StreamResultDecoder:
    """A result message (``protocol.encode_result``) decoded in bounded steps.

    ``step()`` does one piece and returns True when ``masks``, ``probabilities``, ``timings``
    and ``info`` are ready (as ``protocol.decode_result`` returns them)."""

    def __init__(self, body: bytes | bytearray | memoryview) -> None:
        header, payload = unpack_message(body, "server result")
        self.shape = tuple(int(s) for s in header["shape"])
        self.n = int(np.prod(self.shape))
        self.total_raw = int(header["raw_bytes"])
        self.compression = header.get("compression", "none")
        self.entries = [("mask", e) for e in header["masks"]] + [("prob", e) for e in header["probabilities"]]
        self.timings, self.info = header.get("timings", {}), header.get("info", {})
        self.masks: dict[str, np.ndarray] = {}
        self.probabilities: dict[str, np.ndarray] = {}
        self._payload = payload
        self._pos = 0
        if self.compression == "none":
            self.raw: Any = payload
            self._filled = self.total_raw
        elif self.compression == "zlib":
            self.raw = bytearray(self.total_raw)
            self._filled = 0
            self._d = zlib.decompressobj()
        else:
            from .protocol import _decompress

            self.raw = _decompress(payload, self.compression, self.total_raw, "server result")
            self._filled = self.total_raw
        self._entry = 0
        self._at = 0  # bytes of the current entry done
        self._out: np.ndarray | None = None
        self.total_bytes = self.total_raw + sum(e["nbytes"] for _, e in self.entries)
        self.done_bytes = 0

    def step(self) -> bool:
        if self._filled < self.total_raw or (self.compression == "zlib" and self._d is not None):
            self._inflate()
            return False
        if self._entry >= len(self.entries):
            return True
        kind, e = self.entries[self._entry]
        raw = np.frombuffer(self.raw, np.uint8, count=e["nbytes"], offset=e["offset"])
        if self._out is None:
            self._out = np.empty(self.n, bool if kind == "mask" else np.float16)
        if kind == "mask":
            b1 = min(e["nbytes"], self._at + UNPACK_BYTES)
            lo = self._at * 8
            count = min(self.n, b1 * 8) - lo
            self._out[lo:lo + count] = np.unpackbits(raw[self._at:b1], count=count).view(bool)
        else:
            b1 = min(e["nbytes"], self._at + 4 * UNPACK_BYTES)
            self._out[self._at:b1] = (raw[self._at:b1].astype(np.float32) / 255).astype(np.float16)
        self.done_bytes += b1 - self._at
        self._at = b1
        if self._at >= e["nbytes"]:
            arr = self._out.reshape(self.shape, order="F")
            (self.masks if kind == "mask" else self.probabilities)[e["prompt"]] = arr
            self._entry, self._at, self._out = self._entry + 1, 0, None
        return self._entry >= len(self.entries)

    def _inflate(self) -> None:
        d = self._d
        data = d.unconsumed_tail or bytes(self._payload[self._pos:self._pos + INFLATE_BYTES // 4])
        if not d.unconsumed_tail:
            self._pos += len(data)
        room = self.total_raw - self._filled
        out = d.decompress(data, min(INFLATE_BYTES, room + 1)) if data else d.flush()
        if len(out) > room:
            raise ProtocolError("server result: payload inflates beyond its header's raw_bytes.", "Update the server.")
        self.raw[self._filled:self._filled + len(out)] = out
        self._filled += len(out)
        self.done_bytes += len(out)
        if not data and not d.unconsumed_tail:
            if self._filled != self.total_raw:
                raise ProtocolError(f"server result: payload has {self._filled:,} bytes, the header says "
                                    f"{self.total_raw:,}.", "Update the server.")
            self._d = None


__all__ = ["StreamEncoder", "StreamResultDecoder"]
