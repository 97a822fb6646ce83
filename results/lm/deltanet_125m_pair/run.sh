#!/usr/bin/env bash
# The ~125M DeltaNet pair of the pretraining issue: eigenvalues in [0, 1] and in [-1, 1], same tokens and seed, on
# the embedded code corpus (builtin:code, Mistral v1 tokens), then perplexity by position to 8x the training length
# and the eigenvalues the [-1, 1] model uses. One GPU, from the repository root:
#   STEPS=600 DATA=<prepared folder> bash results/lm/deltanet_125m_pair/run.sh [key=value ...]
# DATA unset: the corpus is prepared into $RUNS/data first. Extra key=value go to both runs.
set -euo pipefail
STEPS=${STEPS:-600}
CONFIG=${CONFIG:-deltanet_125m}
OUT=${OUT:-results/lm/deltanet_125m_pair}
RUNS=${RUNS:-runs/deltanet_125m_pair}
st() { python3 -m statetrack "$@"; }
DATA=${DATA:-$RUNS/data}
[ -f "$DATA/meta.json" ] || st data prepare builtin:code --tokenizer mistral-v1 --out "$DATA" --split-ratio 0.05
for me in 0 -1; do
  [ -f "$RUNS/min_eig_$me/model/config.json" ] && continue  # done in an earlier call
  st pretrain "$CONFIG" model.min_eigenvalue=$me train.steps=$STEPS train.eval_every=100 \
     train.ckpt_every=$STEPS train.warmup_steps=$((STEPS / 20)) train.data="$DATA" --no-progress --out "$RUNS/min_eig_$me" "$@"
done
mkdir -p "$OUT"
st ppl "$RUNS/min_eig_0/model" "$RUNS/min_eig_-1/model" --data "$DATA" --max-length 16384 --max-windows 16 \
   --batch-size 4 --train-length 2048 --labels "eigenvalues in [0 1],eigenvalues in [-1 1]" --out "$OUT/ppl"
st inspect "$RUNS/min_eig_-1/model" --data "$DATA" --tokens 65536 --out "$OUT/inspect"
python3 - "$RUNS" "$OUT" <<'PY'
import json, sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
fig, ax = plt.subplots(figsize=(7, 4))
for me, label in (("0", "[0, 1]"), ("-1", "[-1, 1]")):
    recs = [json.loads(l) for l in (runs / f"min_eig_{me}" / "metrics.jsonl").read_text().splitlines()]
    tr = [r for r in recs if r["kind"] == "train"]
    ev = [r for r in recs if r["kind"] == "eval"]
    ax.plot([r["tokens"] / 1e6 for r in tr], [r["loss"] for r in tr], label=f"{label} train", alpha=0.8)
    ax.plot([r["step"] * tr[0]["tokens"] / tr[0]["step"] / 1e6 for r in ev], [r["loss"] for r in ev], "o--",
            label=f"{label} held-out")
    (out / f"metrics_min_eig_{me}.jsonl").write_text((runs / f"min_eig_{me}" / "metrics.jsonl").read_text())
ax.set_xlabel("training tokens (M)"); ax.set_ylabel("loss (nats/token)"); ax.set_yscale("log")
ax.set_title("DeltaNet ~125M on builtin:code: eigenvalues in [0, 1] vs [-1, 1]"); ax.legend(); ax.grid(alpha=0.3)
fig.tight_layout(); fig.savefig(out / "loss_curves.png", dpi=120)
PY
