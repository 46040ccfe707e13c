"""schemathesis against a real uvicorn server (slab engine): no 5xx, responses match the schema, valid
requests accepted, invalid ones rejected, and the stateful checks (deleted job gone, created job found)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _remote_helpers import KEY, SlabEngine, running_server

pytest.importorskip("schemathesis")  # the `test` extra installs it; only a bare install lacks it

HERE = Path(__file__).parent
#: requests per operation and phase; bounded so the run stays within CI's time (seed fixed: reproducible)
EXAMPLES = int(os.environ.get("TEXTSEG_SCHEMATHESIS_EXAMPLES", "5"))
CONFIG = """
[checks.positive_data_acceptance]
# a valid request may still name an image/job the server does not hold (404), a finished/expired
# job (409/410), or a prompt/modality the model cannot do (422): domain answers, not schema rejections
expected-statuses = ["2xx", "401", "404", "409", "410", "422", "429", "503"]

# an image body is a TXSG message that OpenAPI cannot describe: random bytes are rightly refused (400)
[[operations]]
include-operation-id = "put_image"
checks.positive_data_acceptance.enabled = false
"""


@pytest.mark.slow
def test_schemathesis_finds_nothing(tmp_path):
    engine = SlabEngine()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    with running_server(lambda: engine, api_key=KEY, max_voxels=100_000, max_upload_mb=2) as url:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "_schemathesis_hooks",
               "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{url}/v1/openapi.json", "-H", f"Authorization: Bearer {KEY}", "-n", str(EXAMPLES),
               "--seed", "20261203", "--request-timeout", "20", "--max-time", "150"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "Tested: 12" in out and " passed" in out, out[-3000:]
