"""Train one original RecBole model for the benchmarks and keep a portable checkpoint.

Written for a short GPU slot (the benchmarks' originals of ml-1m take 2-3 min each on an H200,
hours on 2 CPU cores): the checkpoint keeps RecBole's format (config, state_dict,
other_parameter) without the optimizer state, on CPU tensors, so that it is a third of the size
and loads anywhere with ``--checkpoint``. Writes ``OUT/{model}-{dataset}-{seed}.pth`` and
``.json`` (training seconds, device, epochs, best validation and test metrics).

    python benchmarks/gpu_originals.py --model BPR --dataset ml-1m --seed 2020 \
        --data_path outputs/data --epochs 25 --out outputs/originals
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_attrcloak import compat  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--config_files", default="configs/default.yaml")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config key (YAML value)"
    )
    args = parser.parse_args(argv)
    if hasattr(compat, "apply_runtime_shims"):
        compat.apply_runtime_shims()

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

    from recbole_attrcloak.config import build_config
    from recbole_attrcloak.quick_start import fit_model
    from recbole_attrcloak.registry import get_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    suffix = "".join(f"-{k}{v}" for k, v in sorted(extra.items()))
    stem = out / f"{args.model}-{args.dataset}-{args.seed}{suffix}"
    overrides = {
        "seed": args.seed,
        "epochs": args.epochs,
        "data_path": args.data_path,
        "checkpoint_dir": str(out / f"work-{stem.name}"),
        "use_gpu": torch.cuda.is_available(),
        "show_progress": False,
        # full-sort evaluation scores eval_batch_size // n_items users at once: with RecBole's
        # 4096 that is one ml-1m user per batch (46 s per validation instead of 0.5 s)
        "eval_batch_size": 524288,
        **extra,
    }
    config = build_config(args.model, args.dataset, args.config_files.split(), overrides)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    tic = time.perf_counter()
    trainer = fit_model(config, model, train_data, valid_data)
    seconds = time.perf_counter() - tic
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    checkpoint = compat.load_checkpoint(trainer.saved_model_file)
    kept = {k: checkpoint[k] for k in ("config", "epoch", "cur_step", "best_valid_score")}
    kept["state_dict"] = {k: v.cpu() for k, v in checkpoint["state_dict"].items()}
    # full-sort caches of GNNs (restore_user_e, restore_item_e) are recomputed on load
    other = checkpoint.get("other_parameter") or {}
    kept["other_parameter"] = {
        k: (None if k.startswith("restore_") else v) for k, v in other.items()
    }
    kept["config"]["checkpoint_dir"] = "saved"
    torch.save(kept, stem.with_suffix(".pth"))
    info = {
        "model": args.model,
        "dataset": args.dataset,
        "seed": args.seed,
        "settings": extra,
        "epochs_cap": args.epochs,
        "best_epoch": int(checkpoint.get("epoch", -1)),
        "train_seconds": seconds,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "best_valid_score": float(trainer.best_valid_score),
        "test": {k: float(v) for k, v in test.items()},
    }
    stem.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
