#!/usr/bin/env bash
# One time-limited slice of a `statetrack reproduce` sweep on a GPU machine that starts bare each time: the run
# cache travels as a tarball (in, from .snap/$TGZ; out, to $OUT/$TGZ), so slices on different machines add up.
#   EXP=table3 REPRO_BUDGET=quick BUDGET=500 ONLY='model=DeltaNet [-1,1],task=modarith' \
#     bash benchmarks/device/sweep_slice.sh          # after `source .whl/setup.sh` (benchmarks/device/make_kit.sh)
# BUDGET: seconds of training before SIGINT (runs stop at once; those with a checkpoint resume next slice).
set -u
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
exp=${EXP:-table3}; tgz=${TGZ:-rq.tgz}; rb=${REPRO_BUDGET:-quick}; out=${OUT:?OUT: the folder that comes back}
only=(); [ -n "${ONLY:-}" ] && only=(--only "$ONLY")
mkdir -p /tmp/rq
[ -f .snap/"$tgz" ] && tar -xzf .snap/"$tgz" -C /tmp/rq && echo "resumed: $(ls /tmp/rq/runs | wc -l) run folders"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date -u
( time timeout -s INT -k 40 "${BUDGET:-500}" python3 -m statetrack reproduce "$exp" --budget "$rb" "${only[@]}" --mps \
    --out /tmp/rq --no-progress ) >"$out/${exp}_log.txt" 2>&1
echo "rc $?"; tail -30 "$out/${exp}_log.txt"
python3 -m statetrack reproduce "$exp" --budget "$rb" "${only[@]}" --device cuda --report-only --out /tmp/rq \
  >"$out/report.txt" 2>&1
tail -15 "$out/report.txt"
echo "unfinished (checkpoints): $(find /tmp/rq -name 'checkpoint*.pt' | wc -l); results: $(find /tmp/rq -name result.json | wc -l)"
tar -czf "$out/$tgz" -C /tmp/rq .
