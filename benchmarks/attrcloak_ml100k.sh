#!/usr/bin/env bash
# AttrCloak DD and DF on ml-100k for BPR, NeuMF and LightGCN from existing RecBole checkpoints.
# Usage: benchmarks/attrcloak_ml100k.sh CKPT_DIR OUT_DIR [--key=value ...]
# (checkpoints named MODEL-*.pth; extra --key=value overrides go to every run, e.g.
# --au_solver=paper)
set -euo pipefail
ckpts=$1; out=$2; shift 2
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for model in BPR NeuMF LightGCN; do
  ckpt=$(ls "$ckpts"/"$model"-*.pth | head -1)
  for mode in dd df; do
    python run_recbole_au.py -m "$model" -d ml-100k --config_files configs/default.yaml \
      --checkpoint "$ckpt" --unlearn attrcloak --au_mode "$mode" --audit "${AUDIT:-quick}" \
      --output_dir "$out/$model-$mode" "$@"
  done
done
