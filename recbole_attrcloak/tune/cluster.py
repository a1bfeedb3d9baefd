"""The Ray a sweep runs on: the one already initialised, a cluster at an address, or a quiet
local one; checked before any trial runs (the address answers, the cluster has the resources
a trial asks for), so that a mistake ends in one line instead of a hang or a retry loop."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator, Mapping

with warnings.catch_warnings():  # Ray 2.6 imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import ray
    from ray._private import services

#: Seconds to wait for a cluster's address to answer before giving up.
CONNECT_TIMEOUT_S = 5.0


class ClusterError(ValueError):
    """No usable Ray cluster: unreachable, absent, or too small for one trial."""


@contextlib.contextmanager
def ray_session(address: str | None, resources: Mapping[str, float]) -> Iterator[None]:
    """Use the initialised Ray, join ``address`` / ``RAY_ADDRESS``, or start a quiet local one
    (shut down again on exit); raise ClusterError when the cluster cannot run one trial with
    ``resources`` (cpu, gpu)."""
    if ray.is_initialized():
        check_resources(resources)
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        ray.init(address=_reachable(address), **quiet)
    else:
        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, **quiet)
    try:
        check_resources(resources)
        yield
    finally:
        ray.shutdown()


def _reachable(address: str) -> str:
    """``address`` resolved as Ray resolves it ("auto": the latest local cluster), once its
    host answers on its port within CONNECT_TIMEOUT_S; else ClusterError."""
    if address.startswith("ray://"):
        host_port = address[len("ray://") :]
    else:
        try:
            host_port = services.canonicalize_bootstrap_address(address)
        except ConnectionError as exc:
            raise ClusterError(f"--ray_address {address}: {_first_line(exc)}") from None
        address = host_port
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"--ray_address {address}: expected HOST:PORT, 'auto' or ray://HOST:PORT"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(
            f"--ray_address {address}: no Ray cluster answers at {host}:{port} ({exc})"
        ) from None
    return address


def check_resources(resources: Mapping[str, float]) -> None:
    """Raise ClusterError when no trial could ever start: one asks for more CPUs or GPUs than
    the whole cluster has (Ray would wait for them forever)."""
    have = ray.cluster_resources()
    for key, name in (("cpu", "CPU"), ("gpu", "GPU")):
        wanted = float(resources.get(key, 0))
        if wanted > float(have.get(name, 0)):
            raise ClusterError(
                f"resources_per_trial asks for {key}: {wanted:g}, but the Ray cluster has "
                f"{float(have.get(name, 0)):g} {name}(s)"
            )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
