"""A sweep joins a running Ray cluster (``ray start --head`` of the installed Ray, loopback only)
through the CLI's ``--ray_address`` and finishes there: Ray 2.6.3 on the pinned stack, current
Ray on the current one.

Head and driver are fresh processes with their own HOME and, for current Ray, token
authentication with a token of their own (Ray 2.6 ignores it), so nothing depends on what an
earlier Ray left on this machine. The head runs in its own process session and temp folder; the
test ends it by that session's id, never with ``ray stop`` (which ends every Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import toy_config

pytestmark = pytest.mark.current

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _end(head: subprocess.Popen) -> None:
    """SIGTERM to the head's process session (``ray start --block`` stops its services), then
    SIGKILL to whatever of it is left."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        try:
            head.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(2)  # let the services it stopped exit before the SIGKILL sweep


@pytest.fixture(scope="module")
def ray_head():
    """A one-node cluster on 127.0.0.1 with 2 CPUs: yields (address, environment, log folder)."""
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths
    env = os.environ | {
        "HOME": str(temp),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # bind to 127.0.0.1, not the network address
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # current Ray: stop at once on SIGTERM
    }
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    command = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block"]
    command += ["--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0"]
    command += ["--include-dashboard=false", f"--ray-client-server-port={_free_port()}"]
    command += [f"--temp-dir={temp}", "--disable-usage-stats"]
    out = temp / "head.out"
    with out.open("w") as log:
        head = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in out.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head failed: {out.read_text()[-2000:]}")
            time.sleep(0.5)
        assert "Local node IP: 127.0.0.1" in out.read_text()
        yield f"127.0.0.1:{port}", env, temp / "session_latest" / "logs"
    finally:
        _end(head)
        shutil.rmtree(temp, ignore_errors=True)


def test_sweep_joins_a_running_cluster(ray_head, toy_root, tmp_path):
    address, env, logs = ray_head
    workers_before = len(list(logs.glob("worker-*")))
    base = toy_config(toy_root, au_max_steps=10, sensitive_attributes=["gender"], epochs=4)
    base |= {"model": "BPR", "dataset": "toy", "unlearn": "attrcloak", "au_mode": "df"}
    spec = {
        "name": "cluster",
        "config": base,
        "search": {"au_alpha": {"grid": [0.5, 1.0]}, "au_solver": "fixed"},
        "resources_per_trial": {"cpu": 1},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_au.py"), "--tune", str(tmp_path / "spec.yaml")]
        + ["--ray_address", address, "--output_dir", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2/2 trials finished" in done.stdout
    table = pd.read_csv(out / "trials.csv")
    assert len(table) == 2 and (table["status"] == "ok").all()
    # the trials ran in the cluster's worker processes, whose logs are in its temp folder
    assert len(list(logs.glob("worker-*"))) > workers_before
