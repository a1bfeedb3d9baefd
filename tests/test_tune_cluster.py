"""A Ray address that leads nowhere ends a sweep at once, with one line on stderr and exit 2,
before any work folder is written (no retry loop, no traceback). Kept apart from test_tune.py,
whose module-wide local Ray would be used instead of the address."""

from __future__ import annotations

import socket
import time

import pytest

from recbole_attrcloak.cli import main


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address", ["auto", "closed-port"])
def test_unusable_ray_address_fails_fast(address, tmp_path, monkeypatch, capsys):
    import ray
    from ray._private import services

    assert not ray.is_initialized()
    # "auto" with no cluster: none recorded in Ray's temp folder, no GCS process running
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "ray-tmp"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    if address == "closed-port":
        address = f"127.0.0.1:{_closed_port()}"
    (tmp_path / "s.yaml").write_text("config: {model: BPR, dataset: ml-100k}\n")
    out = tmp_path / "out"
    tic = time.perf_counter()
    argv = ["--tune", str(tmp_path / "s.yaml"), "--output_dir", str(out)]
    assert main([*argv, "--ray_address", address]) == 2
    assert time.perf_counter() - tic < 10
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --ray_address") and not out.exists()
    assert not ray.is_initialized()
