"""The remote wire format: exact round trips and specific errors for malformed messages."""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from _remote_helpers import small_volume
from TextSegLib.errors import VolumeTooLargeError
from TextSegLib.remote import protocol
from TextSegLib.remote.protocol import ProtocolError, decode_request, encode_request
from TextSegLib.volume import Volume


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["int16", ">i2", "float32", "uint8", "float64"])
def test_request_round_trip_is_exact(dtype, compress):
    vol = small_volume()
    vol = vol.with_array(vol.array.astype(dtype))
    body = encode_request(vol, ["liver", " spleen "], roi_ras=([0, 1, 2], [3, 4, 5]), probabilities=True,
                          compress=compress)
    got, prompts, opts = decode_request(body)
    assert got.shape == vol.shape and np.array_equal(got.array, vol.array)
    assert got.array.dtype == np.dtype(dtype).newbyteorder("=")
    assert np.array_equal(got.ijk_to_ras, vol.ijk_to_ras) and got.modality == "ct"
    assert prompts == ["liver", "spleen"]
    assert opts == {"modality": "ct", "roi_ras": ([0, 1, 2], [3, 4, 5]), "probabilities": True}


@pytest.mark.parametrize("arr", [np.array([[[True, False]]]), np.array([[[2**33 + 1, -3]]], np.int64),
                                 np.array([[[7, -3]]], np.int64), np.array([[[0.5, 1.5]]], np.float16)])
def test_unusual_dtypes_are_sent_without_loss(arr):
    got, _, _ = decode_request(encode_request(Volume(arr), ["x"]))
    assert np.array_equal(got.array.astype(np.float64), arr.astype(np.float64))


def _body(**changes) -> bytes:
    header, payload = protocol.unpack_message(encode_request(small_volume(), ["liver"], compress=False))
    header.update(changes)
    for k, v in list(header.items()):
        if v is Ellipsis:
            del header[k]
    return protocol.pack_message(header, bytes(payload))


@pytest.mark.parametrize("changes, message", [
    ({"shape": [12, 10, 9]}, "needs 2,160"),
    ({"dtype": "float32"}, "shape × dtype"),
    ({"dtype": "object"}, "'dtype' is 'object'"),
    ({"shape": [12, 10]}, "three positive integers"),
    ({"modality": "xray"}, "'modality' is 'xray'"),
    ({"prompts": []}, "'prompts' must be"),
    ({"prompts": [""]}, "'prompts' must be"),
    ({"ijk_to_ras": [[1, 0, 0, 0]] * 3}, "4×4"),
    ({"ijk_to_ras": [[1, 0, 0, "a"]] * 4}, "list of 4 numbers"),
    ({"roi_ras": [[0, 0, 0]]}, "'roi_ras'"),
    ({"compression": "lzma"}, "'lzma' is unknown"),
    ({"version": 99}, "version 99"),
    ({"prompts": ...}, "'prompts' is missing"),
])
def test_malformed_headers_are_named(changes, message):
    with pytest.raises(ProtocolError, match=message):
        decode_request(_body(**changes))


def test_non_finite_geometry_and_values_rejected():
    body = _body()
    header, payload = protocol.unpack_message(body)
    header["ijk_to_ras"][0][0] = float("inf")  # JSON 'Infinity' parses to inf in Python
    text = json.dumps(header).encode()
    with pytest.raises(ProtocolError, match="NaN or Inf"):
        decode_request(protocol.MAGIC + struct.pack("<I", len(text)) + text + bytes(payload))
    nan = Volume(np.full((2, 2, 2), np.nan, np.float32))
    hdr, pay = protocol.unpack_message(encode_request(Volume(np.zeros((2, 2, 2), np.float32)), ["x"], compress=False))
    with pytest.raises(Exception, match="NaN or Inf"):
        decode_request(protocol.pack_message(hdr, nan.array.tobytes(order="F")))


def test_garbage_and_bombs():
    with pytest.raises(ProtocolError, match="magic"):
        decode_request(b"\x80\x04\x95pickle")
    with pytest.raises(ProtocolError, match="header length"):
        decode_request(protocol.MAGIC + struct.pack("<I", 10**6) + b"{}")
    with pytest.raises(ProtocolError, match="not valid UTF-8 JSON"):
        decode_request(protocol.MAGIC + struct.pack("<I", 3) + b"{x}")
    header, _ = protocol.unpack_message(_body())
    header["compression"] = "zlib"
    bomb = zlib.compress(b"\0" * 50_000_000, 9)  # inflates far past the 1,920 bytes promised
    with pytest.raises(ProtocolError, match="1,920"):
        decode_request(protocol.pack_message(header, bomb))
    with pytest.raises(VolumeTooLargeError, match="limit of 100"):
        decode_request(_body(), max_voxels=100)


def test_result_round_trip_packs_bits():
    rng = np.random.default_rng(1)
    shape = (13, 7, 5)  # 455 voxels: not a multiple of 8
    masks = {"a": rng.random(shape) > 0.5, "b b": np.zeros(shape, bool)}
    probs = {"a": rng.random(shape).astype(np.float32)}
    body = protocol.encode_result(shape, masks, probs, {"total": 1.5}, {"tiles": (1, 2), "n": np.int64(3)})
    got, gp, timings, info = protocol.decode_result(body)
    assert all(np.array_equal(got[k], masks[k]) for k in masks) and got["a"].dtype == bool
    assert np.abs(gp["a"].astype(np.float32) - probs["a"]).max() <= 1 / 255 + 1e-3
    assert timings == {"total": 1.5} and info == {"tiles": [1, 2], "n": 3}
    assert len(body) < 455 * 2  # bit-packed (+uint8 probabilities), not one byte per mask voxel
