"""Server URLs with credentials: never sent, never printed (issue 22, item 5)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from TextSegLib.errors import RemoteError
from TextSegLib.remote import RemoteEngine
from TextSegLib.remote.client import printable_url


def test_printable_url_drops_user_and_password():
    assert printable_url("http://alice:s3cret@host:8000/x") == "http://host:8000/x"
    assert printable_url("http://host:8000") == "http://host:8000"


def test_client_refuses_a_url_with_credentials_without_echoing_them():
    with pytest.raises(RemoteError) as err:
        RemoteEngine("http://alice:s3cret-pw@127.0.0.1:9/")
    text = str(err.value)
    assert "s3cret-pw" not in text and "alice" not in text
    assert "127.0.0.1:9" in text and "--api-key" in text


def test_cli_error_never_prints_the_password(tmp_path):
    from TextSegLib.resources import resource_path

    scan = resource_path("samples", "abdomen_ct_sample.nii.gz")
    r = subprocess.run([sys.executable, "-m", "TextSegLib.cli.main", "segment", str(scan), "-p", "liver",
                        "-o", str(tmp_path / "o.seg.nrrd"), "--server", "http://bob:hunter2-secret@127.0.0.1:9"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 2
    assert "carries a user name or password" in out  # the URL was checked, not some earlier error
    assert "hunter2-secret" not in out and "bob:" not in out and "Traceback" not in out
