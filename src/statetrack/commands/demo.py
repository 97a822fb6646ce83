"""`statetrack demo`: parity is learned only with negative eigenvalues (the paper's Figure 1, on a CPU).

Trains the paper's Figure 1 model (a one-layer diagonal linear RNN) twice on parity with lengths 3-40, once
with transition values in [0, 1] (min_eigenvalue = 0) and once in [-1, 1] (min_eigenvalue = -1), evaluates both
on lengths 40-256 and prints their scaled accuracy. Everything printed is measured by this run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEFAULT_STEPS = 600
EVAL_LENGTHS = (40, 256)  # the parity task's test lengths (checked below)


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="parity with eigenvalues in [0, 1] vs [-1, 1] (a few minutes on a CPU)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"training steps per run ({DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def demo_config(min_eigenvalue: float, steps: int, seed: int, device: str, out: Path, progress: bool):
    """The experiment of one demo run (also in configs/parity_diagonal_rnn.yaml)."""
    from statetrack.models import ModelConfig
    from statetrack.train import ExperimentConfig, TrainConfig

    rng = "[0,1]" if min_eigenvalue == 0 else "[-1,1]"
    model = ModelConfig(
        mixer="diagonal_rnn",
        d_model=16,
        n_layers=1,
        mlp_ratio=0.0,
        settings=dict(d_state=16, gate_scale=10.0, min_eigenvalue=min_eigenvalue),
    )
    train = TrainConfig(
        task="parity",
        steps=steps,
        batch_size=256,
        lr=3e-3,
        min_lr=1e-5,
        warmup_frac=0.1,
        weight_decay=0.0,
        seed=seed,
        eval_every=max(steps // 24, 1),
        eval_size="small",
        eval_batch_size=1024,
        log_every=max(steps // 60, 1),
        out_dir=str(out / f"min_eigenvalue_{min_eigenvalue:g}"),
        device=device,
        progress=progress,
        threads=1,
    )
    return ExperimentConfig(name=f"parity diagonal RNN {rng}", model=model, train=train)


def run(args) -> int:
    from statetrack.tasks import get_task
    from statetrack.train import evaluate, train
    from statetrack.train.report import format_table

    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task("parity")
    if tuple(task.test_lengths) != EVAL_LENGTHS:  # pragma: no cover - guards the printed claim
        raise RuntimeError(f"parity test lengths are {task.test_lengths}, expected {EVAL_LENGTHS}")
    # the curve against training step uses the small test set (1024 sequences); the final numbers the paper's
    # 8192 sequences of lengths 40-256
    test = task.test_set("paper")
    results, curves = [], {}
    for mev in (0.0, -1.0):
        cfg = demo_config(mev, args.steps, args.seed, args.device, out, not args.no_progress)
        t0 = time.perf_counter()
        res = train(cfg, task=task)
        final = evaluate(res.model, test, task.chance, batch_size=1024, device=res.model.embed.weight.device)
        wall = time.perf_counter() - t0
        label = f"min_eigenvalue={mev:g} ({'[0, 1]' if mev == 0 else '[-1, 1]'})"
        curves[label] = (final, res.history)
        results.append({"min_eigenvalue": mev, "scaled_accuracy": round(final.scaled_accuracy, 4),
                        "steps": res.step, "wall_seconds": round(wall, 1)})  # fmt: skip
        print(f"{label}: trained {res.step} steps in {wall:.1f} s", flush=True)

    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    png = plot_demo(curves, out / "parity.png")
    total = time.perf_counter() - t_start
    table = format_table(
        ["min_eigenvalue", "eigenvalues", f"scaled acc. (lengths {EVAL_LENGTHS[0]}-{EVAL_LENGTHS[1]})", "steps",
         "wall s"],
        [(f"{r['min_eigenvalue']:g}", "[0, 1]" if r["min_eigenvalue"] == 0 else "[-1, 1]", r["scaled_accuracy"],
          r["steps"], f"{r['wall_seconds']:.1f}") for r in results],
    )  # fmt: skip
    text = (f"parity, diagonal linear RNN (paper Fig. 1), trained on lengths 3-40, seed {args.seed}, "
            f"device {args.device}\n{table}\n(scaled accuracy: 1 = perfect, 0 = chance; "
            f"{final.n_sequences} test sequences)\ntotal wall time {total:.1f} s")  # fmt: skip
    (out / "table.txt").write_text(text + "\n")
    print()
    print(text)
    print(f"wrote {out / 'results.json'}, {out / 'table.txt'} and {png}")
    return 0


def plot_demo(curves: dict, path: Path) -> Path:
    """Two panels: scaled accuracy against test length (after training) and against training step."""
    from statetrack.plotting import pyplot, running_mean, save_figure

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, (final, history) in curves.items():
        Ls = sorted(final.scaled_per_length)
        ys = [final.scaled_per_length[L] for L in Ls]
        # running mean over 5 lengths: ~38 sequences per length are few for a smooth line
        ax1.plot(Ls, running_mean(ys, before=2, after=2), label=label)
        ax2.plot([h["step"] for h in history], [h["scaled_accuracy"] for h in history], marker="o", ms=3,
                 label=label)  # fmt: skip
    ax1.set(xlabel="test sequence length (running mean over 5 lengths)", ylabel="scaled accuracy",
            title="after training (trained on lengths 3-40)",
            ylim=(-0.25, 1.05))  # fmt: skip
    ax2.set(xlabel="training step", ylabel="scaled accuracy (lengths 40-256)", title="during training",
            ylim=(-0.25, 1.05))  # fmt: skip
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.axhline(0.0, color="gray", lw=0.8)
    ax2.legend(loc="center right")
    fig.suptitle("Parity: a diagonal linear RNN needs negative eigenvalues")
    return save_figure(fig, path)
