#!/usr/bin/env bash
# K processes, each training one Table 3 run (CUDA-graphed step) on the same GPU at once; prints each process's
# steps/s and their sum. Run it with and without NVIDIA MPS (nvidia-cuda-mps-control -d) to see what sharing
# one GPU between the reproduce sweep's worker processes gains.
#   bash benchmarks/gpu_sharing.sh "DeltaNet [-1,1]" 6 600      # model label, processes, steps each
set -euo pipefail
cd "$(dirname "$0")/.."
M="$1"; K="$2"; S="$3"
tmp=$(mktemp -d)
for i in $(seq 1 "$K"); do
  (timeout 300 python3 benchmarks/concurrent_steps.py --task modarith --models "$M" --ks 1 --steps "$S" 2>/dev/null \
    | grep -F "| $M |" | awk -F'|' '{print $4}' > "$tmp/$i.txt") &
done
wait
echo "$M, $K processes, steps/s each: $(cat "$tmp"/*.txt | tr '\n' ' ') sum: $(cat "$tmp"/*.txt | awk '{s+=$1} END {print s}')"
rm -rf "$tmp"
