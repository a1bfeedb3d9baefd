"""benchmarks/README.md's ``scale`` and ``distributions`` blocks and docs/attrcloak.md's
``draw_noise`` block, rendered from the CSVs of ``benchmarks/scale.py`` (results/scale: df.csv
on the CPU, cuda/df.csv on a GPU, dd.csv), ``benchmarks/distributions.py``
(results/distributions/dims.csv) and ``benchmarks/draw_noise.py`` (results/draw_noise); each
CSV's Markdown twin (df.md, dd.md, summary.md, draw_noise.md) holds its command, date and
machine."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from recbole_attrcloak.tune.results import markdown_table


def _finished(path: Path) -> list[pd.Series]:
    """The rows of a scale CSV whose run finished (none when the file is absent)."""
    if not path.is_file():
        return []
    frame = pd.read_csv(path)
    frame = frame[frame["status"] == "ok"] if "status" in frame else frame
    return [r for _, r in frame.iterrows()]


def scale_block(results: Path, link: str) -> str:
    """AttrCloak-DF on synthetic users per device and size: steps and why it stopped, seconds
    per step and in all, peak memory (host RSS on the CPU, the CUDA allocator's peak on a GPU)
    against the table's size; then one DD step against one training epoch."""
    lines = []
    rows = []
    for relative in ("df.csv", "cuda/df.csv"):
        for r in _finished(results / relative):
            cuda = r["device"] == "cuda"
            peak = r["peak_cuda_gb"] if cuda else r["peak_rss_gb"]
            cap = f" (cap {int(r['step_cap'])})" if "step_cap" in r else ""
            rows.append(
                [
                    f"[{r['device']}]({link}/{relative.replace('.csv', '.md')})",
                    f"{int(r['n_users'])} × {int(r['d'])}",
                    f"{int(r['steps'])}{cap}: {r['stop_reason']}",
                    f"{r['step_s_median']:.3g}",
                    f"{r['total_s']:.3g}",
                    f"{peak:.2f} ({'CUDA allocator' if cuda else 'host RSS'})",
                    f"{r['table_gb']:.2f}",
                ]
            )
    if rows:
        header = [
            "device",
            "users × d",
            "steps: stop",
            "s/step",
            "total s",
            "peak GiB",
            "table GiB",
        ]
        lines += [
            "AttrCloak-DF on synthetic users (generated from the CSVs; each `.md` beside them has "
            "the command, date, machine and the code's settings, which predate issue 12's "
            "objective):",
            "",
            *markdown_table(header, rows),
        ]
    dd = results / "dd.csv"
    if dd.is_file():
        frame = pd.read_csv(dd)
        parts = [
            f"{r['dd_step_per_epoch']:.2f} of a training epoch with `{r['retention']}` retention"
            for _, r in frame.iterrows()
        ]
        lines.append(
            f"One DD step on ml-100k BPR ([`dd.md`]({link}/dd.md)) costs {' and '.join(parts)}."
        )
    return "\n".join(lines) or f"No scale results in [`{link}`]({link}) yet."


def memory_block(results: Path, link: str) -> str:
    """The scale study's capped runs with the critic families recomputed in the backward pass
    against the code before them: peak memory and seconds per step. ``before/`` and ``after/``
    hold one size measured back to back on an idle machine; ``df.csv`` the sizes they do not
    (10^6 users); ``final/`` both sizes again on the code whose recomputation reuses the
    cross-fitted nulls, and ``final/back_to_back.jsonl`` scale workers of that code and of
    ``after/``'s run alternately on an idle machine (they replace ``final/``'s own row of
    their size: one run's seconds depend on the machine's state)."""
    rows = []
    paired: set[int] = set()
    back = _back_to_back(results / "final" / "back_to_back.jsonl")
    for relative, code in (
        ("before/df.csv", "before"),
        ("after/df.csv", "recomputed"),
        ("df.csv", "recomputed"),
        ("final/df.csv", "nulls reused"),
    ):
        for r in _finished(results / relative):
            n = int(r["n_users"])
            if (relative == "df.csv" and n in paired) or (relative == "final/df.csv" and n in back):
                continue
            if relative == "after/df.csv":
                paired.add(n)
            rows.append(
                [
                    f"[{code}]({link}/{relative.replace('.csv', '.md')})",
                    f"{n} × {int(r['d'])}",
                    f"{int(r['steps'])} (cap {int(r['step_cap'])})",
                    f"{r['step_s_median']:.3g}",
                    f"{r['peak_rss_gb']:.2f}",
                ]
            )
    for n, runs in back.items():
        for commit, group in runs.items():
            seconds = " / ".join(f"{g['step_s_median']:.3g}" for g in group)
            peak = max(g["peak_rss_gb"] for g in group)
            steps = f"{group[0]['steps']} (cap {group[0]['step_cap']})"
            label = f"[{commit}, back to back]({link}/final/back_to_back.jsonl)"
            rows.append([label, f"{n} × {group[0]['d']}", steps, seconds, f"{peak:.2f}"])
    if not rows:
        return f"No memory results in [`{link}`]({link}) yet."
    header = ["code", "users × d", "steps", "s/step", "peak RSS GiB"]
    return "\n".join(
        [
            "Capped runs of the current default's DF on synthetic users, CPU (generated from the "
            "CSVs; each `.md` has the command, date, machine and settings; the back-to-back "
            "runs one s/step per run, in the order they ran, alternating):",
            "",
            *markdown_table(header, rows),
        ]
    )


def _back_to_back(path: Path) -> dict[int, dict[str, list[dict]]]:
    """Scale-worker rows (one JSON object a line, with its ``commit``) by size, then commit."""
    if not path.is_file():
        return {}
    out: dict[int, dict[str, list[dict]]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        out.setdefault(int(row["n_users"]), {}).setdefault(row["commit"], []).append(row)
    return out


def distributions_block(results: Path, link: str) -> str:
    """Per dimension, the KL and the overlap between the gender classes' Gaussians before and
    after AttrCloak: how many dimensions moved closer, the sums, the most separated one."""
    path = results / "dims.csv"
    if not path.is_file():
        return f"No distribution results in [`{link}`]({link}) yet."
    dims = pd.read_csv(path)
    fell = int((dims["kl_after"] < dims["kl_before"]).sum())
    rose = int((dims["overlap_after"] > dims["overlap_before"]).sum())
    top = dims.loc[dims["kl_before"].idxmax()]
    return (
        f"From [`dims.csv`]({link}/dims.csv) (generated; [`summary.md`]({link}/summary.md) has "
        "the run, its audit and utility): the KL between the gender classes fell in "
        f"{fell} of {len(dims)} dimensions (sum {dims['kl_before'].sum():.2f} → "
        f"{dims['kl_after'].sum():.2f}) and their overlap rose in {rose}; on the most separated "
        f"dimension ({int(top['dim'])}) the KL went {top['kl_before']:.3f} → "
        f"{top['kl_after']:.3f} and the overlap {top['overlap_before']:.3f} → "
        f"{top['overlap_after']:.3f}."
    )


def draw_noise_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``draw_noise`` block: per critic family, how far one draw of the
    objective's randomness moves a z at the DF stop (``benchmarks/draw_noise.py``), and the
    stop's SD over 2 check draws and over the default number."""
    path = results / "draw_noise.csv"
    if not path.is_file():
        return f"No draw-noise results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path)
    frame = frame[frame["draw_sd_max"] > 0]  # the linear critics have no randomness
    rows = []
    for (critic, scope), group in frame.groupby(["critic", "scope"], sort=False):
        rows.append(
            [
                critic,
                scope,
                f"{group['draw_sd_mean'].mean():.2f} ({group['draw_sd_max'].max():.2f})",
                f"{group['stop_sd_2_draws'].mean():.2f}",
                f"{group['stop_sd_default'].mean():.2f}",
            ]
        )
    seeds = ", ".join(str(s) for s in sorted(frame["seed"].unique()))
    head = (
        f"From [`draw_noise.csv`]({link}/draw_noise.csv) (generated; "
        f"[`draw_noise.md`]({link}/draw_noise.md) has the command, date and machine): "
        f"ml-100k {frame['model'].iloc[0]}, seeds {seeds}, each at the state where its default "
        "DF run stopped; SD of a z across fresh draws, in null SDs (mean over the family's "
        "statistics and seeds; largest). The linear critics have none."
    )
    table = markdown_table(
        ["critic", "scope", "one draw", "stop, 2 draws", "stop, default draws"], rows
    )
    return "\n".join([head, "", *table])


def speed_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``speed`` block: AttrCloak's unloaded wall time per seed against the
    original's training (``benchmarks/speed.py``) and issue 12's two bars on the medians."""
    path = results / "speed.csv"
    if not path.is_file():
        return f"No speed results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path, comment="#")
    rows = [
        [
            f"{r.model} {r.seed}",
            f"{r.train_s:.1f}",
            f"{r.df_seconds:.2f} ({r.df_steps})",
            f"{r.dd_seconds:.2f} ({r.dd_steps})",
            f"{100 * r.dd_share:.1f} %",
        ]
        for r in frame.itertuples()
    ]
    df, dd = frame["df_seconds"].median(), frame["dd_share"].median()
    head = (
        f"From [`speed.csv`]({link}/speed.csv) (generated; [`speed.md`]({link}/speed.md) has "
        "the command, date and machine): one job at a time, the original trained and timed "
        "first, then unlearned with the defaults; seconds (steps)."
    )
    table = markdown_table(
        ["original", "training s", "DF s (steps)", "DD s (steps)", "DD / training"], rows
    )
    worst_df, worst_dd = frame["df_seconds"].max(), frame["dd_share"].max()
    tail = (
        f"Medians: DF {df:.2f} s (bar 2 s: {'met' if df <= 2.0 else 'not met'}), DD "
        f"{100 * dd:.1f} % of the training (bar 25 %: {'met' if dd <= 0.25 else 'not met'}); "
        f"worst seed: DF {worst_df:.2f} s, DD {100 * worst_dd:.1f} %."
    )
    same = []  # the same benchmark right after, on the same machine (speed/README.md)
    for folder, what in (("previous", "the previous code"), ("repeat", "this code again")):
        if (results / folder / "speed.csv").is_file():
            other = pd.read_csv(results / folder / "speed.csv", comment="#")
            same.append(
                f"[`{folder}/`]({link}/{folder}/speed.md), {what}: DF "
                f"{other['df_seconds'].median():.2f} s, DD "
                f"{100 * other['dd_share'].median():.1f} %"
            )
    if same:
        tail += " Right after, on the same machine, medians: " + "; ".join(same) + "."
    return "\n".join([head, "", *table, tail])


def dd_pairs_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``dd_pairs`` block: NDCG@10 kept, steps and seconds of DD runs with
    fewer ranking pairs per user (``benchmarks/dd_pairs.py``), per seed and on average."""
    path = results / "dd_pairs.csv"
    if not path.is_file():
        return f"No DD pair-count results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path, comment="#")
    seeds = sorted(frame["seed"].unique())
    rows = []
    for pairs, group in sorted(frame.groupby("pairs"), key=lambda g: -g[0]):
        by_seed = group.set_index("seed")
        cells = [
            f"{by_seed.at[s, 'ndcg_kept_pct']:.2f} % ({by_seed.at[s, 'steps']}, "
            f"{by_seed.at[s, 'seconds']:.2f} s)"
            if s in by_seed.index
            else ""
            for s in seeds
        ]
        rows.append([str(pairs), *cells, f"{group['ndcg_kept_pct'].mean():.2f} %"])
    head = (
        f"From [`dd_pairs.csv`]({link}/dd_pairs.csv) (generated; [`dd_pairs.md`]({link}/"
        f"dd_pairs.md) has the command, date and machine): ml-100k {frame['model'].iloc[0]}, "
        "DD with the defaults but the pairs per user; NDCG@10 kept (steps, seconds)."
    )
    table = markdown_table(["pairs", *(f"seed {s}" for s in seeds), "mean kept"], rows)
    return "\n".join([head, "", *table])


def second_moments_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``second_moments`` block: what 5-fold probes read in unlearned user
    tables with the second-moment critics off and on (``benchmarks/second_moments.py``)."""
    path = results / "second_moments.csv"
    if not path.is_file():
        return f"No second-moment probe results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path, comment="#")
    probes = [c for c in frame.columns if "/" in c]
    rows = [
        [
            str(r["mode"]).upper(),
            "on" if r["au_squares"] else "off",
            "on" if r["au_quadratic"] else "off",
            str(r["steps"]),
            f"{r['ndcg_kept_pct']:.2f} %",
            *(f"{r[p]:+.3f}" for p in probes),
        ]
        for _, r in frame.iterrows()
    ]
    head = (
        f"From [`second_moments.csv`]({link}/second_moments.csv) (generated; "
        f"[`second_moments.md`]({link}/second_moments.md) has the command, date and machine): "
        f"the {frame['checkpoint'].iloc[0]} original, unlearned with the defaults but "
        "`au_squares` and `au_quadratic`; 5-fold balanced accuracy − chance of each probe on "
        "the unlearned user table (the audit's logistic regression on the standardised "
        "coordinates, their squares, the products of the top 32 principal components; the "
        "audit's RBF-SVM and random forest)."
    )
    names = ["mode", "au_squares", "au_quadratic", "steps", "NDCG@10 kept", *probes]
    table = markdown_table(names, rows)
    return "\n".join([head, "", *table])


def item_refit_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``item_refit`` block: NDCG@10 of unlearned models before and after
    everything outside the user side is retrained on them (``benchmarks/item_refit.py``), means
    over the seeds per backbone and mode."""
    path = results / "item_refit.csv"
    if not path.is_file():
        return f"No item-refit results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path, comment="#")
    rows = []
    for (model, mode), group in frame.groupby(["model", "mode"], sort=False):
        valid = [group[f"valid_{k}"].mean() for k in ("original", "unlearned", "refit")]
        unchanged = int(group["users_unchanged"].astype(str).eq("True").sum())
        rows.append(
            [
                model,
                mode.upper(),
                str(len(group)),
                " → ".join(f"{v:.4f}" for v in valid),
                f"{group['kept_unlearned_pct'].mean():.2f} → {group['kept_refit_pct'].mean():.2f}",
                f"{unchanged} of {len(group)}",
            ]
        )
    head = (
        f"From [`item_refit.csv`]({link}/item_refit.csv) (generated; [`item_refit.md`]({link}/"
        "item_refit.md) has the command, date, machine and each seed): ml-100k, the defaults, "
        "means over the seeds; validation NDCG@10 of the original → unlearned → refit model, "
        "test NDCG@10 kept (%) unlearned → refit, and the runs whose user representations the "
        "refit left bit for bit as unlearned."
    )
    header = ["backbone", "mode", "seeds", "valid NDCG@10", "test kept (%)", "users unchanged"]
    return "\n".join([head, "", *markdown_table(header, rows)])


def attribute_cost_block(results: Path, link: str) -> str:
    """docs/attrcloak.md's ``attribute_cost`` block: NDCG@10 kept and displacement when one
    attribute is unlearned alone and all together (``benchmarks/attribute_cost.py``), means
    over the seeds."""
    path = results / "attribute_cost.csv"
    if not path.is_file():
        return f"No attribute-cost results in [`{link}`]({link}) yet."
    frame = pd.read_csv(path, comment="#")
    rows = [
        [
            names.replace("+", " + "),
            mode.upper(),
            str(len(group)),
            f"{group['ndcg_kept_pct'].mean():.2f} %",
            f"{group['ndcg_kept_pct'].min():.2f}–{group['ndcg_kept_pct'].max():.2f} %",
            f"{group['moved'].mean():.3f}",
        ]
        for (names, mode), group in frame.groupby(["attributes", "mode"], sort=False)
    ]
    head = (
        f"From [`attribute_cost.csv`]({link}/attribute_cost.csv) (generated; "
        f"[`attribute_cost.md`]({link}/attribute_cost.md) has the command, date, machine and "
        f"each seed): ml-100k {frame['model'].iloc[0]}, the defaults, only the row's attributes "
        "unlearned; NDCG@10 kept (mean and range over the seeds) and the user side's "
        "displacement (relative Frobenius norm, mean)."
    )
    header = ["attributes", "mode", "seeds", "NDCG@10 kept", "range", "moved"]
    return "\n".join([head, "", *markdown_table(header, rows)])
