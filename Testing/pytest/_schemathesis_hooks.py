"""schemathesis hooks for the TextSeg API: generated TXSG messages for ``application/x-textseg``.

The media type is registered with a Hypothesis strategy, so ``PUT /v1/images`` is fuzzed with
real messages (small volumes of every wire dtype and codec, as :func:`protocol.encode_image`
writes them) and with broken ones made from them (cut short, a flipped byte, a header that lies
about the shape, dtype, version or codec, a payload that decompresses to more than declared).
"""
import numpy as np
import schemathesis
from hypothesis import strategies as st

from TextSegLib.remote import protocol
from TextSegLib.volume import Volume


@st.composite
def _image(draw) -> bytes:
    """A well-formed upload: shape 1..6 per axis, any wire dtype and codec, a positive-spacing grid."""
    shape = tuple(draw(st.integers(1, 6)) for _ in range(3))
    dtype = draw(st.sampled_from(protocol.DTYPES))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 100, shape).astype(dtype)
    spacing = [draw(st.sampled_from([0.5, 1.0, 2.5])) for _ in range(3)]
    m = np.diag([*spacing, 1.0])
    m[:3, 3] = [draw(st.integers(-200, 200)) for _ in range(3)]
    codec = draw(st.sampled_from(protocol.CODECS))
    try:
        return protocol.encode_image(Volume(values, m, "ct", name="fuzz"), codec)[1]
    except ImportError:  # an optional codec not installed here
        return protocol.encode_image(Volume(values, m, "ct", name="fuzz"), "zlib")[1]


_LIES = st.sampled_from([
    {"shape": [512, 512, 2048]}, {"shape": [0, 4, 4]}, {"shape": [-1, 4, 4]}, {"shape": [2, 2]},
    {"dtype": "float16"}, {"dtype": "object"}, {"version": 99}, {"compression": "lz4"},
    {"ijk_to_ras": [[0, 0, 0, 0]] * 4}, {"ijk_to_ras": [[1e308, 0, 0, 0]] * 4}, {"shape": "big"},
])


@st.composite
def _broken(draw) -> bytes:
    body = draw(_image())
    kind = draw(st.sampled_from(["cut", "flip", "lie", "bomb"]))
    if kind == "cut":
        return body[:draw(st.integers(0, max(0, len(body) - 1)))]
    if kind == "flip":
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
    header, payload = protocol.unpack_message(body)
    if kind == "lie":
        header = {**header, **draw(_LIES)}
        return protocol.pack_message(header, bytes(payload))
    # a payload that inflates to more than the header declares (a small decompression bomb)
    raw = bytes(4 * int(np.prod(header["shape"])) * 64)
    return protocol.pack_message({**header, "compression": "zlib"}, protocol.compress_bytes(raw, "zlib"))


schemathesis.openapi.media_type(protocol.CONTENT_TYPE, st.one_of(_image(), _broken()))


@schemathesis.serializer("application/x-textseg")
def _textseg_binary(ctx, value):
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
