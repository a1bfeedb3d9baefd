"""How AttrCloak's cost grows with the number of users and the embedding size (issue #6, item 5).

    python -m benchmarks.scale df [--quick] [--device cpu|cuda] [--sizes 10000x128,...] [--out DIR]
    python -m benchmarks.scale dd [--quick] [--out DIR]

``df``: AttrCloak-DF on synthetic user embeddings with planted attributes (gender-like 2 classes,
age-like 7, occupation-like 21, imbalanced; each class shifts the mean and stretches the
covariance along its own direction), with the package's L_AU and α solver and the product's DF
defaults (``au_*`` keys of ``properties/overall.yaml``). Each size runs in a fresh subprocess so
that its peak memory (``ru_maxrss``; on CUDA also the allocator's peak) is its own. Writes
``df.csv``, ``df.md`` and ``df.png`` (time per step and peak memory against |U|, log–log).
The unlearning is the product's engine (``recbole_attrcloak.engine``, as ``--unlearn attrcloak
--au_mode df`` runs it). Imports only torch, numpy, yaml and ``recbole_attrcloak.engine`` and
``.losses`` (no RecBole): run it from the repository root with ``python -m`` where RecBole is
not installed.

``dd``: one AttrCloak-DD step (one training batch, through the engine as the product builds it)
against one RecBole training epoch of BPR on ml-100k. Needs RecBole. Writes ``dd.csv`` and
``dd.md``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

import recbole_attrcloak
from recbole_attrcloak.engine import AttrCloakSettings, DistanceRetention
from recbole_attrcloak.engine.build import build_objective, table_unlearner
from recbole_attrcloak.losses import LeakageObjective

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "scale"
PACKAGE = Path(recbole_attrcloak.__file__).parent
PROPERTIES = PACKAGE / "properties" / "overall.yaml"
# What the DF measurements depend on: L_AU and α_u, the engine's loop, and the defaults.
PRODUCT_FILES = [*sorted((PACKAGE / "losses").glob("*.py")), PROPERTIES]
PRODUCT_FILES += sorted((PACKAGE / "engine").glob("*.py"))

FULL_SIZES = "10000x128,30000x128,100000x128,300000x128,1000000x128,100000x512"
QUICK_SIZES = "1000x16,2000x16,4000x16,2000x32"

# Class shares of the planted attributes: ml-100k's gender split, ML-1M's seven age groups,
# and a Zipf law over 21 occupations (ml-100k's occupations range from 0.7 % to 21 %).
_ZIPF = 1.0 / np.arange(1, 22)
CLASS_SHARES: dict[str, np.ndarray] = {
    "gender": np.array([273, 670]) / 943,
    "age": np.array([222, 1103, 2096, 1193, 550, 496, 380]) / 6040,
    "occupation": _ZIPF / _ZIPF.sum(),
}
# Planted signal in whitened units: (length of each class's mean shift, stretch of the standard
# deviation along the class's own direction).
PLANTED: dict[str, tuple[float, float]] = {
    "gender": (0.8, 0.5),
    "age": (0.6, 0.5),
    "occupation": (0.6, 0.5),
}
# Covariance of the base embeddings: eigenvalues ∝ 1/i with total variance 0.05·d, close to
# BPR's user table on ml-100k (d = 128).
VARIANCE_PER_DIM = 0.05
GENERATION_CHUNK = 65_536


def machine_header(command: str) -> str:
    """Markdown lines with the exact command, the date and the machine (cores, CPU, GPU, load)."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join(
        [
            f"Command: `{command}`",
            "",
            f"Date: {datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}. "
            f"Machine: {os.cpu_count()} CPU cores ({cpu}), {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads; load average {load} at the end.",
        ]
    )


def product_settings() -> dict[str, Any]:
    """The ``au_*`` defaults of the product (``properties/overall.yaml``)."""
    with open(PROPERTIES, encoding="utf-8") as handle:
        return {k: v for k, v in yaml.safe_load(handle).items() if k.startswith("au_")}


def product_fingerprint() -> str:
    """A short hash of PRODUCT_FILES: rows measured with different product code differ in it."""
    digest = hashlib.sha256()
    for path in PRODUCT_FILES:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def synthetic_users(n: int, d: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """n user embeddings (float32, (n, d)) with planted attributes, and the attributes' codes."""
    gen = torch.Generator().manual_seed(seed)
    eigen = 1.0 / torch.arange(1, d + 1, dtype=torch.float64)
    eigen *= VARIANCE_PER_DIM * d / eigen.sum()
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    mixing = (eigen.sqrt()[:, None] * basis.T).float()  # z @ mixing has covariance Q Λ Qᵀ
    labels, effects = {}, []
    for name, shares in CLASS_SHARES.items():
        shift, stretch = PLANTED[name]
        probs = torch.as_tensor(shares, dtype=torch.float64)
        labels[name] = torch.multinomial(probs, n, replacement=True, generator=gen)
        means = shift * torch.nn.functional.normalize(torch.randn(len(shares), d, generator=gen))
        directions = torch.nn.functional.normalize(torch.randn(len(shares), d, generator=gen))
        effects.append((labels[name], means, directions, stretch))
    emb = torch.empty(n, d)
    for start in range(0, n, GENERATION_CHUNK):
        rows = slice(start, start + GENERATION_CHUNK)
        z = torch.randn(len(range(n)[rows]), d, generator=gen)
        for codes, means, directions, stretch in effects:
            v = directions[codes[rows]]
            z += stretch * (z * v).sum(1, keepdim=True) * v + means[codes[rows]]
        emb[rows] = z @ mixing
    return emb, labels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def df_unlearn(
    original: torch.Tensor, objective: LeakageObjective, s: Mapping[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """AttrCloak-DF on a user table through the product's engine (``engine.table_unlearner``:
    the same objective, step, stop rule, α_u and optimiser as ``--unlearn attrcloak --au_mode
    df``), timed. The objective's first evaluation (the random-relabeling null, or the Gaussian
    bound's random-label levels) is timed apart as ``reference_s``."""
    device = original.device
    settings = AttrCloakSettings.from_settings({**s, "au_mode": "df"})
    emb = original.clone().requires_grad_(True)
    unlearner = table_unlearner(emb, objective, settings)
    step_s: list[float] = []
    plain_step = unlearner.step

    def timed_step() -> None:
        tic = time.perf_counter()
        plain_step()
        _sync(device)
        step_s.append(time.perf_counter() - tic)

    unlearner.step = timed_step  # type: ignore[method-assign]
    _sync(device)
    started = time.perf_counter()
    with torch.no_grad():
        l_au_before = float(objective(original))
    _sync(device)
    reference_s = time.perf_counter() - started
    outcome = unlearner.run()  # ends on the kept state
    _sync(device)
    info = {
        "objective": s["au_objective"],
        "steps": outcome.steps_run,
        "kept_step": outcome.kept_step,
        "stop_reason": outcome.stop_reason.value,
        "total_s": time.perf_counter() - started,
        "reference_s": reference_s,
        "step_s_median": statistics.median(step_s),
        "step_s_mean": statistics.fmean(step_s),
        "l_au_before": l_au_before,
    }
    return emb.detach(), info


def _probe(
    x: torch.Tensor, y: torch.Tensor, train: torch.Tensor, hidden: Sequence[int], seed: int
) -> float:
    """Balanced accuracy on the held-out users of a class-weighted classifier (a linear model
    when ``hidden`` is empty, an MLP otherwise) trained on the ``train`` users."""
    torch.manual_seed(seed)
    k = int(y.max()) + 1
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-12)
    z = (x - mean) / std
    widths = [x.shape[1], *hidden, k]
    layers: list[torch.nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1]).to(x.device)
    counts = torch.bincount(y[train], minlength=k).clamp_min(1).float()
    loss_fn = torch.nn.CrossEntropyLoss(weight=counts.sum() / (k * counts))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    idx = torch.nonzero(train).flatten()
    for _ in range(30):
        for batch in idx[torch.randperm(len(idx), device=x.device)].split(256):
            optimiser.zero_grad()
            loss_fn(net(z[batch]), y[batch]).backward()
            optimiser.step()
    with torch.no_grad():
        pred = net(z[~train]).argmax(1)
    truth = y[~train]
    recalls = [(pred[truth == c] == c).float().mean() for c in range(k) if bool((truth == c).any())]
    return float(torch.stack(recalls).mean())


ATTACKERS: dict[str, tuple[int, ...]] = {"linear": (), "mlp": (128, 64)}


def probe_attacks(
    stages: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor], users: int, seed: int
) -> dict[str, float]:
    """Balanced accuracy of each attacker on each attribute and stage, on the same random
    ``users`` users (70 % train / 30 % held out) for every stage."""
    gen = torch.Generator().manual_seed(seed)
    n = next(iter(stages.values())).shape[0]
    subset = torch.randperm(n, generator=gen)[: min(users, n)]
    train = torch.rand(len(subset), generator=gen) < 0.7
    out = {}
    for stage, emb in stages.items():
        x = emb[subset.to(emb.device)].float()
        for name, codes in labels.items():
            y = codes[subset].to(emb.device)
            for attacker, hidden in ATTACKERS.items():
                out[f"{name}_{attacker}_{stage}"] = _probe(x, y, train.to(emb.device), hidden, seed)
    return out


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def worker(
    n: int,
    d: int,
    device: str,
    seed: int,
    probe_users: int,
    cap: int = 0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One size, in its own process: generate, unlearn (timed, peak memory), probe attacks.
    ``cap`` > 0 replaces ``au_max_steps`` (to time a few steps of a size too slow to finish);
    ``overrides`` replace product defaults (recorded with the row's settings)."""
    dev = torch.device(device)
    s = {**product_settings(), **(overrides or {})}
    provenance = {"product_code": product_fingerprint(), "settings": json.dumps(s)}
    if cap:
        s["au_max_steps"] = cap
    emb, labels = synthetic_users(n, d, seed)
    emb = emb.to(dev)
    objective = build_objective({k: v.to(dev) for k, v in labels.items()}, s, seed)
    after, info = df_unlearn(emb, objective, s)
    row: dict[str, Any] = {"n_users": n, "d": d, "device": device, "step_cap": cap, **info}
    row["peak_rss_gb"] = peak_rss_gb()
    row["peak_cuda_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else 0
    row["table_gb"] = emb.numel() * emb.element_size() / 2**30
    with torch.no_grad():
        row["l_au_after"] = float(objective(after))
    row.update(probe_attacks({"before": emb, "after": after}, labels, probe_users, seed))
    return {**row, **provenance}


def _run_size(n: int, d: int, cap: int, args: argparse.Namespace) -> dict[str, Any]:
    """``worker`` in a fresh interpreter; a failed or killed run becomes a row with its status."""
    command = [sys.executable, "-m", "benchmarks.scale", "worker", "--n", str(n), "--d", str(d)]
    command += ["--cap", str(cap), "--device", args.device, "--seed", str(args.seed)]
    command += ["--probe_users", str(args.probe_users)]
    for item in args.set:
        command += ["--set", item]
    print(f"|U| = {n}, d = {d} ...", file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        status = f"rc {done.returncode}: {last}"
        return {"n_users": n, "d": d, "device": args.device, "step_cap": cap, "status": status}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "status": "ok"}


def scaling_fit(rows: Sequence[Mapping[str, Any]]) -> tuple[int, float, float] | None:
    """(d, slope, intercept) of log(time per step) against log |U| at the d measured at the most
    sizes, or None when no d has two sizes."""
    d, count = Counter(r["d"] for r in rows).most_common(1)[0] if rows else (0, 0)
    if count < 2:
        return None
    part = [r for r in rows if r["d"] == d]
    x = np.log([r["n_users"] for r in part])
    slope, intercept = np.polyfit(x, np.log([r["step_s_median"] for r in part]), 1)
    return d, float(slope), float(intercept)


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}g}"


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _plot_df(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Time per step and peak memory against |U| (log–log), one line per d, with the fit."""
    from matplotlib.figure import Figure

    memory = "peak_cuda_gb" if rows[0]["device"] == "cuda" else "peak_rss_gb"
    fig = Figure(figsize=(11, 4.5))
    ax_time, ax_mem = fig.subplots(1, 2)
    for d in sorted({r["d"] for r in rows}):
        part = sorted((r for r in rows if r["d"] == d), key=lambda r: r["n_users"])
        n = [r["n_users"] for r in part]
        ax_time.loglog(n, [r["step_s_median"] for r in part], "o-", label=f"d = {d}")
        ax_mem.loglog(n, [r[memory] for r in part], "o-", label=f"d = {d}")
    fit = scaling_fit(rows)
    if fit is not None:
        d, slope, intercept = fit
        n = np.array(sorted({r["n_users"] for r in rows if r["d"] == d}), dtype=float)
        ax_time.loglog(
            n, np.exp(intercept) * n**slope, "k--", label=f"fit d = {d}: slope {slope:.2f}"
        )
    ax_time.set_title(f"AttrCloak-DF: time per step ({rows[0]['device']})")
    ax_time.set_ylabel("seconds per step (median)")
    ax_mem.set_title("peak memory of the run")
    ax_mem.set_ylabel("GiB (" + ("CUDA allocator" if memory == "peak_cuda_gb" else "RSS") + ")")
    for ax in (ax_time, ax_mem):
        ax.set_xlabel("|U| (users)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")


def _settings_text(ok: Sequence[Mapping[str, Any]]) -> str:
    """The product settings and code the rows were measured with, or a warning if they differ."""
    recorded = {(r.get("settings", ""), r.get("product_code", "")) for r in ok}
    if recorded in (set(), {("", "")}):
        return "Settings: not recorded in `df.csv`"
    if len(recorded) > 1:
        return (
            "**The rows were measured with different product settings or code** (columns "
            "`settings` and `product_code` of `df.csv`): compare them with care"
        )
    settings, code = recorded.pop()
    s = json.loads(settings)
    shown = ", ".join(f"`{k}: {s[k]}`" for k in sorted(s) if not k.startswith("au_dd"))
    changed = {k: v for k, v in s.items() if product_settings().get(k) != v}
    source = "the product's DF defaults"
    if changed:
        source += " except " + ", ".join(f"`{k}: {v}`" for k, v in sorted(changed.items()))
    return f"Settings ({source}, product code `{code}`): {shown}"


def df_markdown(rows: Sequence[Mapping[str, Any]], header: str) -> str:
    """The DF study as Markdown: settings, one row per size, scaling fit, target verdicts."""
    ok = [r for r in rows if r["status"] == "ok"]
    lines = ["# AttrCloak-DF at scale (synthetic users, planted attributes)", "", header, ""]
    lines += [
        _settings_text(ok)
        + f"; objective `{ok[0].get('objective', '?') if ok else '?'}`; α_u bounds (Gaussian "
        f"bound) {DistanceRetention.bounds}. Steps: taken until the stop (kept: the step "
        "of the state returned, the closest to the target). Time per step: the median over the "
        "run's steps; total = the whole unlearning (the objective's first evaluation: its null "
        "or random-label reference, every step taken, "
        "and L_AU of the original and of the kept state). "
        "Peak memory: the process's peak RSS (data generation included; the table itself is "
        "`table GiB`), on CUDA the allocator's peak. Attacks: balanced accuracy of a torch "
        "linear / MLP probe (70/30 split of a random subsample of users) before → after; chance "
        + " / ".join(f"{1 / len(v):.3f}" for v in CLASS_SHARES.values())
        + " (gender / age / occupation).",
        "",
        "| d | \\|U\\| | steps | stop | s/step | total s | peak GiB | table GiB "
        "| L_AU before → after | gender lin / MLP | age lin / MLP | occupation lin / MLP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['d']} | {r['n_users']} | failed: {r['status']} |" + " |" * 9)
            continue
        memory = r["peak_cuda_gb"] if r["device"] == "cuda" else r["peak_rss_gb"]
        attacks = [
            " / ".join(f"{r[f'{a}_{k}_before']:.3f} → {r[f'{a}_{k}_after']:.3f}" for k in ATTACKERS)
            for a in CLASS_SHARES
        ]
        stop = r["stop_reason"] + (f" (cap {r['step_cap']})" if r.get("step_cap") else "")
        kept = f" (kept {r['kept_step']})" if "kept_step" in r else ""
        lines.append(
            f"| {r['d']} | {r['n_users']} | {r['steps']}{kept} | {stop} "
            f"| {_fmt(r['step_s_median'])} | {_fmt(r['total_s'])} | {memory:.2f} "
            f"| {r['table_gb']:.2f} | {_fmt(r['l_au_before'])} → {_fmt(r['l_au_after'])} | "
            + " | ".join(attacks)
            + " |"
        )
    lines += ["", "## Scaling", ""]
    fit = scaling_fit(ok)
    if fit is not None:
        d, slope, _ = fit
        sizes = [r["n_users"] for r in ok if r["d"] == d]
        lines.append(
            f"- Time per step against |U| at d = {d}: log–log slope {slope:.2f} over "
            f"{min(sizes)}–{max(sizes)} users (O(|U|·d²) predicts 1)."
        )
        for r in ok:
            base = next((b for b in ok if b["d"] == d and b["n_users"] == r["n_users"]), None)
            if r["d"] != d and base is not None:
                ratio = r["step_s_median"] / base["step_s_median"]
                lines.append(
                    f"- |U| = {r['n_users']}: d = {r['d']} costs {ratio:.1f}× d = {d} per step, "
                    f"exponent {math.log(ratio) / math.log(r['d'] / d):.2f} in d (d² predicts 2)."
                )
    target = next((r for r in ok if (r["n_users"], r["d"]) == (1_000_000, 128)), None)
    if target is not None:
        memory = target["peak_cuda_gb"] if target["device"] == "cuda" else target["peak_rss_gb"]
        seconds = target["total_s"]
        capped = target.get("step_cap") and target["stop_reason"] == "max_steps"
        if seconds > 60:
            time_verdict = f"not met ({'at least ' if capped else ''}{seconds / 60:.1f}×)"
        else:
            time_verdict = "undetermined (capped run)" if capped else "met"
        verdict = [
            f"total {seconds:.0f} s"
            + (f" for the first {target['steps']} steps alone" if capped else "")
            + f" vs ≤ 60 s: {time_verdict}",
            f"peak {memory:.2f} GiB vs ≤ 4 GB (3.73 GiB): "
            + ("met" if memory * 2**30 <= 4e9 else f"not met ({memory * 2**30 / 4e9:.1f}×)"),
        ]
        lines += ["", "## Target: DF on 10^6 users × 128", "", *[f"- {v}" for v in verdict]]
    return "\n".join(lines) + "\n"


def parse_sizes(text: str) -> list[tuple[int, int, int]]:
    """``"10000x128,1000000x128@10"`` → [(10000, 128, 0), (1000000, 128, 10)] (@: step cap)."""
    sizes = []
    for item in text.split(","):
        n, rest = item.split("x")
        d, _, cap = rest.partition("@")
        sizes.append((int(n), int(d), int(cap or 0)))
    return sizes


def _write_df_report(rows: Sequence[Mapping[str, Any]], out: Path, header: str) -> None:
    text = df_markdown(rows, header)
    (out / "df.md").write_text(text, encoding="utf-8")
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        _plot_df(ok, out / "df.png")
    print(text)


def run_df(args: argparse.Namespace, command: str) -> None:
    """The DF study: one subprocess per size, then CSV, Markdown and the log–log figure."""
    sizes = parse_sizes(args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES))
    for item in args.set:  # a bad --set fails here, not in every worker
        _override(item)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, d, cap in sizes:
        rows.append(_run_size(n, d, cap, args))
        _write_csv(out / "df.csv", rows)  # after every size: a long run keeps what it measured
    _write_df_report(rows, out, machine_header(command))


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def run_render(args: argparse.Namespace) -> None:
    """df.md and df.png again from an earlier run's df.csv (e.g. one cut short elsewhere)."""
    out = Path(args.folder)
    with open(out / "df.csv", newline="", encoding="utf-8") as handle:
        rows = [{k: _value(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    again = shlex.join(["python", "-m", "benchmarks.scale", "render", args.folder])
    header = (
        f"Measured: {args.measured}\n\nRendered from `df.csv` on {stamp} by "
        f"`{again} --measured '…'` (the text above)."
    )
    _write_df_report(rows, out, header)


DD_RETENTIONS = ("train_loss", "ranking")


def run_dd(args: argparse.Namespace, command: str) -> None:
    """One AttrCloak-DD step (the product's engine, for each DD retention) against one
    RecBole training epoch of BPR on ml-100k."""
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from recbole_attrcloak.config import build_config
    from recbole_attrcloak.data.attributes import load_attributes
    from recbole_attrcloak.registry import get_model
    from recbole_attrcloak.unlearning.attrcloak import build_unlearner
    from recbole_attrcloak.unlearning.base import only_user_side

    config = build_config(
        "BPR", "ml-100k", [str(ROOT / "configs" / "default.yaml")], {"au_mode": "dd"}
    )
    default_retention = config["au_dd_retention"]
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = get_model("BPR")(config, train_data._dataset).to(config["device"])
    epochs, steps = (1, 5) if args.quick else (5, 50)
    epoch_s = []
    for epoch in range(epochs):
        tic = time.perf_counter()
        Trainer(config, model)._train_epoch(train_data, epoch)
        epoch_s.append(time.perf_counter() - tic)
    epoch = statistics.median(epoch_s)
    labels = {
        name: torch.as_tensor(lab.codes, device=config["device"])
        for name, lab in load_attributes(config, dataset).items()
    }
    rows = []
    for retention in DD_RETENTIONS:
        config["au_dd_retention"] = retention
        trained = copy.deepcopy(model)  # every retention starts from the same trained model
        with only_user_side(trained) as side:
            tic = time.perf_counter()
            bound = build_objective(labels, config, int(config["seed"]))
            settings = AttrCloakSettings.from_settings(config)
            unlearner = build_unlearner(config, settings, trained, side, bound, train_data)
            with torch.no_grad():  # the random-label levels, as the product's first evaluation
                bound(side.compute(trained))
            setup_s = time.perf_counter() - tic
            step_s = []
            for i in range(steps + 1):  # the first step warms up and is not counted
                tic = time.perf_counter()
                unlearner.step()
                if i:
                    step_s.append(time.perf_counter() - tic)
        step = statistics.median(step_s)
        rows.append(
            {
                "retention": retention,
                "default": retention == default_retention,
                "n_users": dataset.user_num - 1,
                "n_train_interactions": len(train_data.dataset),
                "train_batch_size": config["train_batch_size"],
                "batches_per_epoch": len(train_data),
                "epoch_s_median": epoch,
                "batch_s": epoch / len(train_data),
                "setup_s": setup_s,
                "dd_step_s_median": step,
                "dd_step_per_epoch": step / epoch,
                "dd_step_per_batch": step / (epoch / len(train_data)),
                "epochs_timed": epochs,
                "dd_steps_timed": steps,
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "dd.csv", rows)
    first = rows[0]
    lines = [
        "# One AttrCloak-DD step vs one training epoch (BPR, ml-100k)",
        "",
        machine_header(command),
        "",
        f"`configs/default.yaml` (train batch {first['train_batch_size']}, "
        f"{first['batches_per_epoch']} batches per epoch over {first['n_train_interactions']} "
        f"training interactions, {first['n_users']} users). Epoch: RecBole's "
        f"`Trainer._train_epoch`, median of {epochs}. DD step: one step of the product's "
        f"engine as `--unlearn attrcloak` builds it (L_AU on the whole user table, the "
        f"retention loss, α_u, one update; `train_loss` reads one training batch per step, "
        f"`ranking` scores every user's pairs), median of {steps} after one warm-up step. "
        f"Setup: building L_AU and the engine (random-label levels; `ranking` also ranks "
        f"every user's items once).",
        "",
        "| DD retention | setup s | one DD step s | one epoch s | one training batch s "
        "| DD step / epoch | DD step / training batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = r["retention"] + (" (default)" if r["default"] else "")
        lines.append(
            f"| {name} | {_fmt(r['setup_s'])} | {_fmt(r['dd_step_s_median'])} "
            f"| {_fmt(r['epoch_s_median'])} | {_fmt(r['batch_s'])} "
            f"| {r['dd_step_per_epoch']:.3f} | {r['dd_step_per_batch']:.1f} |"
        )
    text = "\n".join(lines)
    (out / "dd.md").write_text(text + "\n", encoding="utf-8")
    print(text)


def _override(item: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--set`` as (key, YAML-parsed value); an unknown key raises."""
    key, sep, value = item.partition("=")
    if not sep or key not in product_settings():
        raise SystemExit(f"--set {item}: expected KEY=VALUE with an au_* key of overall.yaml")
    return key, yaml.safe_load(value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    sub = parser.add_subparsers(dest="part", required=True)
    df = sub.add_parser("df", help="AttrCloak-DF on synthetic users, |U| and d varied")
    dd = sub.add_parser("dd", help="one DD step vs one training epoch (needs RecBole)")
    for p in (df, dd):
        p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds each")
        p.add_argument("--out", default=str(RESULTS), help="output folder")
    df.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    df.add_argument(
        "--sizes",
        help=f"comma-separated NxD[@CAP] (CAP: at most that many steps), default {FULL_SIZES}",
    )
    render = sub.add_parser("render", help="df.md and df.png again from a folder's df.csv")
    render.add_argument("folder")
    render.add_argument("--measured", required=True, help="how and where df.csv was measured")
    work = sub.add_parser("worker", help="internal: one size, prints one JSON line")
    work.add_argument("--n", type=int, required=True)
    work.add_argument("--d", type=int, required=True)
    work.add_argument("--device", default="cpu")
    work.add_argument("--cap", type=int, default=0)
    for p in (df, work):
        p.add_argument("--seed", type=int, default=2020)
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="replace a product default (YAML value), e.g. au_relabel_adapt=false",
        )
        p.add_argument("--probe_users", type=int, default=20_000, help="users for the attacks")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run one part of the study."""
    args = _parser().parse_args(argv)
    command = shlex.join(
        ["python", "-m", "benchmarks.scale", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.part == "worker":
        overrides = dict(_override(item) for item in args.set)
        row = worker(args.n, args.d, args.device, args.seed, args.probe_users, args.cap, overrides)
        print(json.dumps(row))
    elif args.part == "df":
        run_df(args, command)
    elif args.part == "render":
        run_render(args)
    else:
        run_dd(args, command)


if __name__ == "__main__":
    main()
