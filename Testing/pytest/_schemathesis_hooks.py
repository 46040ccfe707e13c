"""schemathesis hooks for the TextSeg API: send generated binary bodies (TXSG messages) as raw bytes."""
import schemathesis


@schemathesis.serializer("application/x-textseg")
def _textseg_binary(ctx, value):
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
