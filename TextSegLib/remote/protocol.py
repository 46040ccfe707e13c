"""Wire format of the TextSeg remote server (API version 2). No pickle anywhere.

A binary message (image upload, inline job, result) is one body::

    b"TXSG" | uint32 little-endian header length | UTF-8 JSON header | payload

Image (``PUT /v1/images``) header: ``version``, ``shape`` (3 ints, I J K), ``dtype``
(a little-endian numpy scalar type from :data:`DTYPES`), ``ijk_to_ras`` (4×4 finite
numbers) and ``compression`` (one of :data:`CODECS`). The payload is the array in
Fortran order (I fastest, like NIfTI/NRRD), compressed. The image id is
:func:`image_id`: SHA-256 of the canonical geometry JSON and the raw array bytes,
so the same scan always has the same id and a repeat upload can be skipped.

A job (``POST /v1/jobs``, JSON) names the image: ``{"image", "prompts", "modality",
"roi_ras", "probabilities"}``. The version-1 style inline body (image header +
``modality``, ``prompts``, ``roi_ras``, ``probabilities``) is still accepted with
``version`` 2 (:func:`encode_request`).

Result header: ``shape``, ``masks`` / ``probabilities`` (lists of
``{"prompt", "offset", "nbytes"}`` into the decompressed payload),
``timings`` and ``info``. Masks are ``numpy.packbits`` of the Fortran-order
bool array; probabilities are uint8 (value/255).
"""
from __future__ import annotations

import json
import math
import hashlib
import struct
import zlib
from typing import Any, Sequence

import numpy as np

from ..errors import RemoteError
from ..volume import MODALITIES, Volume

MAGIC = b"TXSG"
VERSION = 2
#: volume codecs: "blosc2" (byte-shuffle + zstd in a Blosc2 frame, the default), "zstd", "zlib", "none"
CODECS = ("blosc2", "zstd", "zlib", "none")
DEFAULT_CODEC = "blosc2"
CONTENT_TYPE = "application/x-textseg"
#: numpy dtype names accepted on the wire (always little-endian).
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
MAX_HEADER_BYTES = 1 << 20
MAX_PROMPTS = 256
MAX_PROMPT_CHARS = 500


class ProtocolError(RemoteError):
    """A message does not follow the wire format (the server answers 400)."""


def pack_message(header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return MAGIC + struct.pack("<I", len(head)) + head + payload


def unpack_message(body: bytes | memoryview, source: str = "message") -> tuple[dict[str, Any], memoryview]:
    """Split a body into (header dict, payload view); raises :class:`ProtocolError`."""
    body = memoryview(body)
    if len(body) < 8 or bytes(body[:4]) != MAGIC:
        raise ProtocolError(f"{source}: body does not start with the TextSeg magic bytes 'TXSG'.",
                            "Send the volume with TextSegLib.remote (RemoteEngine) or follow protocol.py.")
    (n,) = struct.unpack("<I", body[4:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(body):
        raise ProtocolError(f"{source}: header length {n} is larger than the body or than {MAX_HEADER_BYTES} bytes.",
                            "The upload is truncated or malformed; send it again.")
    try:
        header = json.loads(bytes(body[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{source}: header is not valid UTF-8 JSON ({exc}).", "Fix the JSON header.") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"{source}: header is a JSON {type(header).__name__}, expected an object.")
    return header, body[8 + n:]


def best_codec() -> str:
    """blosc2 when installed (the ``server`` extra), else zlib (always there)."""
    try:
        import blosc2  # noqa: F401
    except ImportError:
        return "zlib"
    return "blosc2"


def compress_bytes(raw: bytes, codec: str = DEFAULT_CODEC, itemsize: int = 1) -> bytes:
    """``raw`` compressed with ``codec`` (see :data:`CODECS`); ``itemsize`` lets blosc2 shuffle bytes."""
    if codec == "none":
        return raw
    if codec == "zlib":
        return zlib.compress(raw, 1)
    if codec == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=1, threads=-1, write_content_size=True).compress(raw)
    if codec == "blosc2":
        import blosc2

        cparams = {"typesize": max(1, int(itemsize)), "codec": blosc2.Codec.ZSTD, "clevel": 1,
                   "filters": [blosc2.Filter.SHUFFLE]}
        return blosc2.SChunk(chunksize=8 << 20, data=raw, cparams=cparams).to_cframe()
    raise ValueError(f"unknown codec {codec!r}")


#: bytes decoded per step: a payload that yields more than its header declared is stopped within one step
CHUNK_BYTES = 8 << 20


def _decompress(data: memoryview, compression: str, expected: int, source: str) -> bytearray:
    """Decompress exactly ``expected`` bytes, step by step into one buffer of that size: a payload that
    holds more (a compression bomb) is refused as soon as it passes the header's promise."""
    bad = f"{source}: payload is not valid {compression} data"
    data = memoryview(data)
    try:
        if compression == "none":
            if len(data) != expected:
                raise ProtocolError(f"{source}: payload has {len(data):,} bytes but the header's shape × dtype needs "
                                    f"{expected:,}.", "Check shape and dtype in the header, or resend a complete upload.")
            return bytearray(data)
        out = bytearray(expected)  # zero pages: memory is only used as it is written
        if compression == "zlib":
            n = _inflate_zlib(data, out)
        elif compression == "zstd":
            n = _inflate_zstd(data, out, expected, source)
        elif compression == "blosc2":
            n = _inflate_blosc2(data, out, expected, source)
        else:
            raise ProtocolError(f"{source}: compression {compression!r} is unknown.", f"Use one of: {', '.join(CODECS)}.")
    except ProtocolError:
        raise
    except Exception as exc:  # zlib.error, zstandard.ZstdError, blosc2's RuntimeError/ValueError
        raise ProtocolError(f"{bad} ({type(exc).__name__}).", "Send it again.") from None
    if n != expected:
        more = "more than" if n > expected else f"{n:,} bytes but"
        raise ProtocolError(f"{source}: payload holds {more} the header's shape × dtype needs ({expected:,} bytes).",
                            "Check shape and dtype in the header, or resend a complete upload.")
    return out


def _inflate_zlib(data: memoryview, out: bytearray) -> int:
    d = zlib.decompressobj()
    view, n, tail = memoryview(out), 0, bytes(data)
    while tail or not d.eof:
        piece = d.decompress(tail, CHUNK_BYTES)
        tail = d.unconsumed_tail
        if not piece:
            if d.eof or not tail:
                break
            continue
        if n + len(piece) > len(out):
            return n + len(piece)  # more than declared: stop here
        view[n:n + len(piece)] = piece
        n += len(piece)
    return n


def _inflate_zstd(data: memoryview, out: bytearray, expected: int, source: str) -> int:
    import zstandard

    size = zstandard.frame_content_size(bytes(data[:18]))
    if size != expected:
        raise ProtocolError(f"{source}: zstd frame holds {size:,} bytes, the header's shape × dtype needs "
                            f"{expected:,}.", "Resend with TextSegLib.remote.")
    view, n = memoryview(out), 0
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=False) as reader:
        while True:
            piece = reader.read(CHUNK_BYTES)
            if not piece:
                return n
            if n + len(piece) > expected:
                return n + len(piece)
            view[n:n + len(piece)] = piece
            n += len(piece)


def _inflate_blosc2(data: memoryview, out: bytearray, expected: int, source: str) -> int:
    import blosc2

    frame = bytes(data)  # kept alive here: the SChunk reads it without a copy
    schunk = blosc2.schunk_from_cframe(frame, copy=False)
    if schunk.nbytes != expected:
        raise ProtocolError(f"{source}: blosc2 frame holds {schunk.nbytes:,} bytes, the header's shape × "
                            f"dtype needs {expected:,}.", "Resend with TextSegLib.remote.")
    target = np.frombuffer(out, np.uint8) if expected else np.zeros(0, np.uint8)
    n = 0
    for i in range(schunk.nchunks):
        size = blosc2.get_cbuffer_sizes(schunk.get_chunk(i))[0]
        if n + size > expected:
            return n + size  # a chunk claiming more than is left: refused before it is decoded
        if size:
            schunk.decompress_chunk(i, target[n:n + size])
        n += size
    return n


# -- images ---------------------------------------------------------------------------
def wire_array(volume: Volume) -> tuple[str, bytes]:
    """(wire dtype name, raw little-endian Fortran-order bytes) of ``volume.array``."""
    name = wire_array_dtype(volume.array)
    return name, np.asarray(volume.array, dtype=np.dtype(name).newbyteorder("<")).tobytes(order="F")


def wire_array_dtype(a: np.ndarray) -> str:
    """The wire dtype name that holds every value of ``a`` exactly."""
    name = a.dtype.name
    if name not in DTYPES:  # bool, int64, float16 ... -> a wire type that holds every value exactly
        if a.dtype.kind == "b":
            name = "uint8"
        elif a.dtype.kind == "f":
            name = "float32" if a.dtype.itemsize < 4 else "float64"
        else:
            fits = a.size == 0 or (int(a.min()) >= -2**31 and int(a.max()) < 2**31)
            name = "int32" if fits else "float64"
    return name


def geometry_header(shape: Sequence[int], dtype: str, ijk_to_ras: Any) -> dict[str, Any]:
    return {"shape": [int(s) for s in shape], "dtype": dtype,
            "ijk_to_ras": np.asarray(ijk_to_ras, dtype=float).tolist()}


def image_id(geometry: dict[str, Any], raw: bytes | memoryview) -> str:
    """SHA-256 (hex) of the canonical geometry JSON and the raw voxel bytes."""
    g = {k: geometry[k] for k in ("shape", "dtype", "ijk_to_ras")}
    h = hashlib.sha256(json.dumps(g, separators=(",", ":"), sort_keys=True).encode("utf-8"))
    h.update(raw)
    return h.hexdigest()


def encode_image(volume: Volume, codec: str = DEFAULT_CODEC) -> tuple[str, bytes]:
    """(image id, body of ``PUT /v1/images``) for ``volume``."""
    name, raw = wire_array(volume)
    geo = geometry_header(volume.shape, name, volume.ijk_to_ras)
    iid = image_id(geo, raw)
    header = {"version": VERSION, **geo, "compression": codec}
    return iid, pack_message(header, compress_bytes(raw, codec, np.dtype(name).itemsize))


def _check_version(header: dict, source: str) -> None:
    if header.get("version") != VERSION:
        raise ProtocolError(f"{source}: API version {header.get('version')!r} is not supported (server speaks {VERSION}).",
                            "Update the client or the server so both use the same TextSeg version.")


def _geometry(header: dict, source: str, max_voxels: int | None) -> tuple[list[int], str, np.ndarray]:
    shape = _field(header, "shape", list, source)
    if len(shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ProtocolError(f"{source}: header field 'shape' must be three positive integers, got {shape!r:.80}.")
    voxels = shape[0] * shape[1] * shape[2]
    if max_voxels is not None and voxels > max_voxels:
        from ..errors import VolumeTooLargeError
        raise VolumeTooLargeError(f"{source}: {voxels:,} voxels {tuple(shape)} exceed this server's limit of {max_voxels:,}.",
                                  "Crop the scan (e.g. with an ROI) or ask the server admin to raise --max-voxels.")
    dtype = _field(header, "dtype", str, source)
    if dtype not in DTYPES:
        raise ProtocolError(f"{source}: header field 'dtype' is {dtype!r}.", f"Use one of: {', '.join(DTYPES)}.")
    rows = _field(header, "ijk_to_ras", list, source)
    if len(rows) != 4:
        raise ProtocolError(f"{source}: header field 'ijk_to_ras' must be a 4×4 matrix (4 rows of 4 numbers).")
    matrix = np.array([_numbers(r, 4, "ijk_to_ras", source) for r in rows])
    return shape, dtype, matrix


def declared_bytes(body: bytes | memoryview, *, max_voxels: int | None = None, source: str = "image upload") -> int:
    """The raw size a message's header declares (shape × dtype), checked; decode nothing yet."""
    header, _ = unpack_message(body, source)
    _check_version(header, source)
    shape, dtype, _ = _geometry(header, source, max_voxels)
    return shape[0] * shape[1] * shape[2] * np.dtype(dtype).itemsize


def decode_image(body: bytes | memoryview, *, max_voxels: int | None = None,
                 source: str = "image upload") -> tuple[str, dict[str, Any], bytes]:
    """(image id, geometry header, raw bytes) from a ``PUT /v1/images`` body; every field checked."""
    header, payload = unpack_message(body, source)
    _check_version(header, source)
    shape, dtype, matrix = _geometry(header, source, max_voxels)
    compression = header.get("compression", "none")
    raw = _decompress(payload, compression if isinstance(compression, str) else repr(compression),
                      shape[0] * shape[1] * shape[2] * np.dtype(dtype).itemsize, source)
    geo = geometry_header(shape, dtype, matrix)
    volume_from_raw(geo, raw, "", source).validate(check_values=True)
    return image_id(geo, raw), geo, raw


def volume_from_raw(geometry: dict[str, Any], raw: bytes, modality: str = "", name: str = "image") -> Volume:
    dt = np.dtype(geometry["dtype"]).newbyteorder("<")
    array = np.frombuffer(raw, dtype=dt).reshape(geometry["shape"], order="F")
    return Volume(array.astype(array.dtype.newbyteorder("="), copy=False), np.asarray(geometry["ijk_to_ras"], float),
                  modality, name=name)


# -- segment request ----------------------------------------------------------------
def encode_request(volume: Volume, prompts: Sequence[str], *, modality: str | None = None,
                   roi_ras: tuple[Sequence[float], Sequence[float]] | None = None,
                   probabilities: bool = False, compress: bool | str = True) -> bytes:
    """An inline ``POST /v1/jobs`` body (image and job in one message) for ``volume`` and ``prompts``."""
    codec = compress if isinstance(compress, str) else ("zlib" if compress else "none")
    name, raw = wire_array(volume)
    header = {
        "version": VERSION, **geometry_header(volume.shape, name, volume.ijk_to_ras),
        "modality": modality if modality is not None else volume.modality,
        "prompts": list(prompts),
        "roi_ras": None if roi_ras is None else [[float(x) for x in roi_ras[0]], [float(x) for x in roi_ras[1]]],
        "probabilities": bool(probabilities), "compression": codec,
    }
    return pack_message(header, compress_bytes(raw, codec, np.dtype(name).itemsize))


def _field(header: dict, name: str, kind: type | tuple, source: str) -> Any:
    if name not in header:
        raise ProtocolError(f"{source}: header field {name!r} is missing.", "Add it (see TextSegLib/remote/protocol.py).")
    value = header[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"{source}: header field {name!r} is a {type(value).__name__}, not the expected type.")
    return value


def _numbers(value: Any, n: int, name: str, source: str) -> list[float]:
    if not isinstance(value, list) or len(value) != n or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise ProtocolError(f"{source}: header field {name!r} must be a list of {n} numbers, got {value!r:.80}.")
    if not all(math.isfinite(x) for x in value):
        raise ProtocolError(f"{source}: header field {name!r} contains NaN or Inf.", "Send finite numbers.")
    return [float(x) for x in value]


def check_job_fields(header: dict, source: str) -> dict[str, Any]:
    """``prompts``, ``modality``, ``roi_ras``, ``probabilities`` of a job, checked (raises :class:`ProtocolError`)."""
    modality = _field(header, "modality", str, source).strip().lower() if "modality" in header else ""
    if modality not in MODALITIES + ("",):
        raise ProtocolError(f"{source}: field 'modality' is {modality!r}.", "Use one of: ct, mri, pet (or '').")
    prompts = _field(header, "prompts", list, source)
    if not prompts or len(prompts) > MAX_PROMPTS or not all(
            isinstance(p, str) and p.strip() and len(p) <= MAX_PROMPT_CHARS for p in prompts):
        raise ProtocolError(f"{source}: field 'prompts' must be 1 to {MAX_PROMPTS} non-empty strings "
                            f"of at most {MAX_PROMPT_CHARS} characters.", "Name at least one structure, e.g. 'liver'.")
    roi = header.get("roi_ras")
    if roi is not None:
        if not isinstance(roi, list) or len(roi) != 2:
            raise ProtocolError(f"{source}: field 'roi_ras' must be null or [[R,A,S],[R,A,S]].")
        roi = (_numbers(roi[0], 3, "roi_ras", source), _numbers(roi[1], 3, "roi_ras", source))
    probs = header.get("probabilities", False)
    if not isinstance(probs, bool):
        raise ProtocolError(f"{source}: field 'probabilities' must be true or false.")
    return {"prompts": [p.strip() for p in prompts], "modality": modality or None, "roi_ras": roi,
            "probabilities": probs}


def decode_request(body: bytes | memoryview, *, max_voxels: int | None = None,
                   source: str = "request") -> tuple[Volume, list[str], dict[str, Any]]:
    """(volume, prompts, options) from an inline job body; every field is checked."""
    iid, geo, raw, opts = decode_inline(body, max_voxels=max_voxels, source=source)
    volume = volume_from_raw(geo, raw, opts["modality"] or "", source)
    return volume, opts.pop("prompts"), opts


def decode_inline(body: bytes | memoryview, *, max_voxels: int | None = None,
                  source: str = "request") -> tuple[str, dict[str, Any], bytes, dict[str, Any]]:
    """(image id, geometry, raw bytes, job fields) from an inline job body."""
    header, _ = unpack_message(body, source)
    _check_version(header, source)
    opts = check_job_fields(header, source)
    iid, geo, raw = decode_image(body, max_voxels=max_voxels, source=source)
    return iid, geo, raw, opts


# -- result ---------------------------------------------------------------------------
def encode_result(shape: Sequence[int], masks: dict[str, np.ndarray], probabilities: dict[str, np.ndarray] | None,
                  timings: dict[str, float], info: dict[str, Any]) -> bytes:
    """Bit-packed masks (+ uint8 probabilities), zlib-compressed, as one message."""
    parts: list[bytes] = []
    offset = 0

    def add(data: bytes, prompt: str) -> dict:
        nonlocal offset
        parts.append(data)
        entry = {"prompt": prompt, "offset": offset, "nbytes": len(data)}
        offset += len(data)
        return entry

    mask_entries = [add(np.packbits(np.asarray(m, bool).ravel(order="F")).tobytes(), p) for p, m in masks.items()]
    prob_entries = [add(np.clip(np.rint(np.asarray(v, np.float32) * 255), 0, 255).astype(np.uint8).tobytes(order="F"), p)
                    for p, v in (probabilities or {}).items()]
    header = {"version": VERSION, "shape": [int(s) for s in shape], "masks": mask_entries,
              "probabilities": prob_entries, "timings": {k: float(v) for k, v in timings.items()},
              "info": json_safe(info), "compression": "zlib", "raw_bytes": offset}
    return pack_message(header, zlib.compress(b"".join(parts), 1))


def decode_result(body: bytes) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float], dict]:
    """(masks, probabilities, timings, info) from a result body."""
    header, payload = unpack_message(body, "server result")
    shape = tuple(int(s) for s in header["shape"])
    n = int(np.prod(shape))
    raw = _decompress(payload, header.get("compression", "none"), int(header["raw_bytes"]), "server result")
    masks, probs = {}, {}
    for e in header["masks"]:
        bits = np.frombuffer(raw, np.uint8, count=e["nbytes"], offset=e["offset"])
        masks[e["prompt"]] = np.unpackbits(bits, count=n).astype(bool).reshape(shape, order="F")
    for e in header["probabilities"]:
        q = np.frombuffer(raw, np.uint8, count=e["nbytes"], offset=e["offset"]).reshape(shape, order="F")
        probs[e["prompt"]] = (q.astype(np.float32) / 255).astype(np.float16)
    return masks, probs, header.get("timings", {}), header.get("info", {})


def json_safe(value: Any) -> Any:
    """Tuples, numpy scalars and arrays turned into plain JSON values (others to str)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
