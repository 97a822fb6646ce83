"""What the pretraining loop costs beyond the model: tokens/s of ``statetrack pretrain`` against the bare model
step (forward with the fused loss, backward, gradient clipping, fused AdamW, the same packed batches and
position_ids) of the same model and config, measured one after the other in one run.

    python -m benchmarks.pretrain_overhead [--out FILE.md] [--config deltanet_125m] [--steps 60] [--warmup 10]
        [--smoke] [key=value ...]   # overrides of the pretraining config, e.g. train.data_cache=.devdata

The loop's rate is read from its own metrics (every ``train.log_every`` steps, the first ``--warmup`` steps
left out); the bare step is timed over the same number of steps after the same warm-up. Issue target: the loop
within 5% of the bare step. ``--smoke``: the tiny config on the CPU, 10 timed steps (checks the script only).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from statetrack.lm import data as lm_data
from statetrack.lm.distributed import Dist
from statetrack.lm.pretrain import lm_param_groups, pretrain, resolve_data, uses_bf16
from statetrack.lm.pretrain_config import load_pretrain_config
from statetrack.train.metrics_log import METRICS

from .harness import Report, parser, smoke_note, smoke_or_cuda


def loop_rate(out: Path, warmup: int) -> float:
    """Tokens/s over the logged windows after ``warmup`` steps (total tokens over total time)."""
    recs = [json.loads(line) for line in (out / METRICS).read_text().splitlines()]
    recs = [r for r in recs if r.get("kind") == "train"]
    tokens = secs = 0.0
    for prev, r in zip(recs, recs[1:], strict=False):
        if prev["step"] >= warmup:
            n = r["tokens"] - prev["tokens"]
            tokens, secs = tokens + n, secs + n / r["tokens_per_s"]
    return tokens / secs


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bare_rate(cfg, steps: int, warmup: int, device: str = "cuda") -> float:
    """The model step alone on the loop's own batches (drawn before timing, already on the device)."""
    from statetrack.models import StateTrackForCausalLM

    tc, dev = cfg.train, torch.device(device)
    d = Dist.setup(device)
    try:
        path = resolve_data(cfg, d, lm_data, cfg.model_config().vocab_size)
    finally:
        d.close()
    loader = iter(lm_data.PackedLoader(lm_data.TokenShards(path, "train"), tc.batch_size, tc.seq_len, seed=tc.seed))
    batches = [{k: v.to(dev) for k, v in next(loader).items()} for _ in range(steps + warmup)]
    torch.manual_seed(tc.seed)
    with torch.device(dev):
        model = StateTrackForCausalLM(cfg.model_config())
    opt = torch.optim.AdamW(lm_param_groups(model, tc.weight_decay), lr=tc.lr, betas=(tc.beta1, tc.beta2),
                            eps=tc.eps, fused=True)  # fmt: skip
    t = 0.0
    for i, b in enumerate(batches):
        if i == warmup:
            _sync(dev)
            t = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=uses_bf16(tc, dev)):  # as the loop
            loss = model(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    _sync(dev)
    return steps * tc.batch_size * tc.seq_len / (time.perf_counter() - t)


def build_parser():
    p = parser(__doc__)
    p.add_argument("--config", default="deltanet_125m", help="a packaged LM config name or a YAML path")
    p.add_argument("--steps", type=int, default=60, help="timed steps (after --warmup)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--smoke", action="store_true", help="the tiny config on the CPU (checks the script only)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the config")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    dev = smoke_or_cuda(a, "pretrain_overhead", config="tiny", steps=10, warmup=10)
    if dev is None:
        return 2
    if a.warmup % 10 or a.steps % 10:
        raise SystemExit("--steps and --warmup must be multiples of 10 (the loop logs every 10 steps)")
    rep = Report("pretrain_overhead", f"# The pretraining loop against the bare model step: {a.config}", a.out,
                 print_only=a.print_only, argv=argv)  # fmt: skip
    rep.header()
    with tempfile.TemporaryDirectory() as tmp:
        over = [f"train.steps={a.steps + a.warmup}", f"train.warmup_steps={a.warmup}", "train.log_every=10",
                "train.eval_every=0",
                f"train.ckpt_every={a.steps + a.warmup}", f"train.out_dir={tmp}", "train.progress=false",
                f"train.device={dev}", *a.overrides]  # fmt: skip
        cfg = load_pretrain_config(a.config, over)
        tc = cfg.train
        rep.say(f"{smoke_note(dev)}B {tc.batch_size} x T {tc.seq_len}, {a.steps} timed steps after {a.warmup}; "
                f"overrides: {over}")  # fmt: skip
        res = pretrain(cfg)
        n = sum(p.numel() for p in res.model.parameters())
        ours = loop_rate(Path(tmp), a.warmup)
        del res
        if dev == "cuda":
            torch.cuda.empty_cache()
        bare = bare_rate(cfg, a.steps, a.warmup, dev)
    rep.table("path", "params", "tokens/s", "loop / bare")
    rep.row("statetrack pretrain (the loop: checkpoint at the end excluded)", f"{n / 1e6:.0f}M", f"{ours:,.0f}",
            f"{ours / bare:.3f}")  # fmt: skip
    rep.row("bare model step (same batches, clip, fused AdamW)", f"{n / 1e6:.0f}M", f"{bare:,.0f}", "1.000")
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
