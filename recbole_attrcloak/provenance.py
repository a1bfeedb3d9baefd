"""Where a result comes from: the code version (package version, git commit, a digest of the
package's own files) and the machine (cores, CPU, GPU, memory, library versions).

Sweeps record the code version in their work folder and refuse to resume results of other code;
benchmarks and result headers print the machine.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import recbole_attrcloak

PACKAGE = Path(recbole_attrcloak.__file__).resolve().parent
_LIBRARIES = ("torch", "recbole", "ray", "xgboost-cpu", "xgboost", "scikit-learn")


def _git(*args: str) -> str:
    """A git command's output in the package's checkout; "" when there is no git or no repo."""
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def source_digest() -> str:
    """A short hash of the package's Python and YAML files (names and contents): it changes
    with every edit of the code or its defaults, committed or not."""
    digest = hashlib.sha1()
    for path in sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".yaml")):
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@cache
def code_version() -> dict[str, Any]:
    """``package`` (the installed version), ``commit`` (short git commit, None outside a git
    checkout), ``dirty`` (uncommitted changes in the package) and ``source`` (source_digest).
    Two results come from the same code when ``package`` and ``source`` agree."""
    commit = _git("rev-parse", "--short", "HEAD") or None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE))
    return {
        "package": recbole_attrcloak.__version__,
        "commit": commit,
        "dirty": bool(commit and status),
        "source": source_digest(),
    }


def same_code(recorded: dict[str, Any] | None, current: dict[str, Any] | None = None) -> bool:
    """Whether ``recorded`` (a code_version of earlier results) is this code."""
    current = current or code_version()
    return bool(recorded) and all(recorded.get(k) == current[k] for k in ("package", "source"))


def describe(version: dict[str, Any] | None) -> str:
    """A code version in one phrase, e.g. "0.1.0, commit a66a6b6 (with changes), source 3f2c…"."""
    if not version:
        return "unknown code"
    commit = version.get("commit")
    text = f"{version.get('package')}, " + (f"commit {commit}" if commit else "no git commit")
    text += " (with uncommitted changes)" if version.get("dirty") else ""
    return f"{text}, source {version.get('source')}"


def machine() -> dict[str, Any]:
    """Where the code runs: usable cores, CPU model, GPUs, memory, Python and library versions,
    and the code version."""
    info: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "cpu": platform.processor()}
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        info["cpu"] = names[0].strip() if names else info["cpu"]
    if meminfo.is_file():
        kib = re.search(r"^MemTotal:\s*(\d+)", meminfo.read_text(), re.M)
        info["memory_gib"] = round(int(kib.group(1)) / 2**20) if kib else None
    info["gpu"] = _gpus() or "none"
    info["python"] = platform.python_version()
    for package in _LIBRARIES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    version = code_version()
    info["code"] = version
    info["commit"] = (version["commit"] or "unknown") + (
        " (with uncommitted changes)" if version["dirty"] else ""
    )
    return info


def device_name(device: Any) -> str:
    """What a torch device is, for result tables: the GPU's model name for CUDA (e.g. "NVIDIA
    H200"), else the device type ("cpu")."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    return device.type


def _gpus() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return " / ".join(done.stdout.split("\n")).strip(" /") if done.returncode == 0 else ""


def machine_line(info: dict[str, Any]) -> str:
    """``machine()`` as one sentence for a result file's header."""
    return (
        f"Machine: {info['cores']} cores ({info['cpu']}), GPU: {info['gpu']}, "
        f"{info.get('memory_gib', '?')} GiB RAM; Python {info['python']}, torch "
        f"{info.get('torch', '?')}, RecBole {info.get('recbole', '?')}, "
        f"Ray {info.get('ray', '?')}; code {describe(info.get('code'))}."
    )
