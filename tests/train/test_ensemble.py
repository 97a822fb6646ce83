"""Ensembles (statetrack.train.ensemble): E runs of one cell trained as one batched model give each run's own
losses, gradient norms, lrs and evaluations; the sweep groups the runs of a cell and writes the single runs' records.

Tolerance: a member computes in batched kernels and at the step's padded width, so it agrees with its single run
to fp32 rounding, not bitwise; training can amplify rounding. Here (one block of width 16, parity, Table 3's lrs
1e-3, 5e-4, 1e-4) no amplification shows: the largest loss difference over every step of every member and mixer
was 2e-7 (1-2 ulps of a loss near 0.7). With two blocks and lr >= 1e-3, DeltaNet and the mLSTM amplify any
rounding-level change (a single run fed one extra pad column, say: a mathematically identical run) to ~1e-2
after 150-300 steps; the ensemble's difference from the single run is of that same size there (docs/reproduce.md).
A wrong member (another's lr, seed, data or gradient) differs by > 1e-3 within a few steps.
"""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from statetrack.models import ModelConfig
from statetrack.reproduce import budgets as budgets_mod
from statetrack.reproduce import build_runs, experiments, get_budget, reproduce
from statetrack.reproduce.ensembles import group_jobs
from statetrack.reproduce.runner import _job
from statetrack.tasks import get_task
from statetrack.train import ExperimentConfig, TrainConfig, build_model, load_checkpoint, train
from statetrack.train import ensemble as ensemble_mod
from statetrack.train.ensemble import FOLDED_OPS, EnsembleForward, ensemble_cell, train_ensemble

torch.set_num_threads(1)

LOSS_ATOL = 2e-6  # measured: 2e-7 (see above)

# Table 3's mixers (experiments.table3_models), tiny: (settings, steps, grad_clip). Steps: 300 where a CPU step is
# cheapest; fewer for the sLSTM (a Python loop over time, ~2x the cost) and for Mamba and DeltaNet (its scan runs
# once per member; DeltaNet's chunked delta rule with value checks), so that this file stays within a minute
# of two cores. Clipping on for the models Table 3 clips on modular arithmetic (each member clips its own norm).
MIXERS = {
    "transformer": ({"mixer": "transformer", "n_heads": 2}, 300, 1.0),
    "mlstm": ({"mixer": "mlstm", "n_heads": 2, "mlp_ratio": 0.0}, 300, 0.0),
    "slstm": ({"mixer": "slstm", "n_heads": 2}, 150, 0.0),
    "mamba": ({"mixer": "mamba", "d_state": 4, "expand": 2, "conv_size": 4, "mlp_ratio": 0.0}, 200, 1.0),
    "deltanet": ({"mixer": "deltanet", "n_heads": 2, "use_short_conv": True, "conv_size": 4}, 200, 1.0),
}
MEMBERS = ((1e-3, 0), (5e-4, 1), (1e-4, 2))  # (lr, seed): three of Table 3's lrs


def table3_mixers() -> set[str]:
    return {ms.model["mixer"] for task in ("parity", "modarith") for ms in experiments.table3_models(task)}


def test_every_table3_mixer_is_tested():
    assert table3_mixers() <= set(MIXERS)


def member_configs(
    mixer: str, steps: int, clip: float, members=MEMBERS, device="cpu", **train_kw
) -> list[ExperimentConfig]:
    model, _, _ = MIXERS[mixer]
    if mixer in ("mamba", "deltanet"):
        model = {**model, "min_eigenvalue": -1.0}
    out = []
    for lr, seed in members:
        out.append(ExperimentConfig(
            name=f"{mixer} lr={lr} seed={seed}",
            model=ModelConfig.from_dict({"d_model": 16, "n_layers": 1, **model}),
            train=TrainConfig(task="parity", steps=steps, batch_size=8, train_lengths=[3, 10], lr=lr, seed=seed,
                              grad_clip=clip, eval_samples=32, eval_lengths=[10, 12], log_every=10, progress=False,
                              device=device, **train_kw),
        ))  # fmt: skip
    return out


def records(folder) -> list[dict]:
    return [json.loads(ln) for ln in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_members_train_as_their_single_runs(mixer, tmp_path):
    _, steps, clip = MIXERS[mixer]
    cfgs = member_configs(mixer, steps, clip)
    for i, c in enumerate(cfgs):
        c.train.out_dir = str(tmp_path / f"ens{i}")
    ens = train_ensemble(copy.deepcopy(cfgs))
    for i, (c, e) in enumerate(zip(cfgs, ens, strict=True)):
        single_cfg = copy.deepcopy(c)
        single_cfg.train.out_dir = str(tmp_path / f"single{i}")
        s = train(single_cfg)
        assert e.step == s.step == steps and not e.diverged
        diff = max(abs(a - b) for a, b in zip(e.losses, s.losses, strict=True))
        assert diff <= LOSS_ATOL, f"member {i} ({c.name}): max |loss difference| {diff:.2e}"
        # the logged records: the same lines, the same values to the same tolerance (rates aside)
        er, sr = records(tmp_path / f"ens{i}"), records(tmp_path / f"single{i}")
        assert [(r["kind"], r["step"]) for r in er] == [(r["kind"], r["step"]) for r in sr]
        for a, b in zip(er, sr, strict=True):
            assert a.keys() == b.keys()
            for k in ("loss", "grad_norm", "accuracy", "scaled_accuracy"):
                if k in a:
                    assert a[k] == pytest.approx(b[k], rel=1e-4, abs=LOSS_ATOL), (k, a, b)
            if "lr" in a:
                assert a["lr"] == b["lr"]  # each member's own schedule, bitwise
        assert e.final.accuracy == s.final.accuracy
    # the members really are different runs
    assert len({round(e.losses[-1], 4) for e in ens}) == len(ens)


def test_ops_the_ensemble_folds_are_still_the_layers_ops():
    import importlib

    for module, name, op, _ in FOLDED_OPS:
        assert getattr(importlib.import_module(module), name) is op, (module, name)


def test_fused_layer_ops_take_their_torch_references_inside_the_ensemble():
    # DeltaNet's short conv / L2 norm / output norm run as Triton kernels on CUDA, which vmap cannot batch: the
    # ensemble runs their torch references. "triton" on a CPU without the interpreter would raise.
    cfgs = member_configs("deltanet", 1, 0.0, members=MEMBERS[:2])
    models = [build_model(c, get_task("parity")) for c in cfgs]
    for m in models:
        m.blocks[0].mixer.fused_ops = "triton"
    x = get_task("parity").sample(2, generator=torch.Generator().manual_seed(0), lengths=5).input
    out = EnsembleForward(models)(torch.stack([x, x]))
    assert out.shape == (2, 2, x.shape[1], models[0].config.vocab_size)
    assert [m.blocks[0].mixer.fused_ops for m in models] == ["triton", "triton"]  # restored
    for m in models:
        m.blocks[0].mixer.fused_ops = "torch"
    for e in range(2):
        assert torch.allclose(out[e], models[e](x), atol=1e-6)


def test_members_must_differ_only_in_lr_and_seed():
    cfgs = member_configs("transformer", 5, 0.0)
    cfgs[1].train.grad_clip = 1.0
    with pytest.raises(ValueError, match="train.grad_clip"):
        train_ensemble(cfgs, write_files=False)
    lstm = member_configs("transformer", 5, 0.0)
    for c in lstm:
        c.model = ModelConfig.from_dict({"mixer": "lstm", "d_model": 16, "n_layers": 1})
    with pytest.raises(ValueError, match="no tested ensemble"):
        train_ensemble(lstm, write_files=False)
    assert ensemble_cell(cfgs[0].to_dict()) == ensemble_cell(member_configs("transformer", 5, 0.0)[2].to_dict())


def test_ensemble_resumes_and_its_checkpoints_are_single_run_checkpoints(tmp_path):
    cfgs = member_configs("transformer", 40, 1.0, members=MEMBERS[:2], ckpt_every=20)
    for i, c in enumerate(cfgs):
        c.train.out_dir = str(tmp_path / f"m{i}")
    whole = train_ensemble(copy.deepcopy(cfgs), write_files=False)
    train_ensemble(copy.deepcopy(cfgs), stop_after=20)
    shutil.copytree(tmp_path / "m1", tmp_path / "alone")
    resumed = train_ensemble(copy.deepcopy(cfgs), resume=True, note=lambda s: None)
    for w, r in zip(whole, resumed, strict=True):
        assert r.resumed_from is not None and r.steps_run == 20
        assert r.losses == pytest.approx(w.losses, abs=LOSS_ATOL)
    # a member's checkpoint is a single run's: the single trainer continues it
    single = copy.deepcopy(cfgs[1])
    single.train.out_dir = str(tmp_path / "alone")
    s = train(single, resume=True, note=lambda s: None)
    assert s.steps_run == 20 and s.losses == pytest.approx(whole[1].losses, abs=LOSS_ATOL)
    assert load_checkpoint(tmp_path / "m1")["step"] == 40


def test_a_diverging_member_stops_alone(monkeypatch):
    real = ensemble_mod.build_model

    def poisoned(cfg, task):  # the seed-1 member starts with a NaN weight: its first loss is NaN
        model = real(cfg, task)
        if cfg.train.seed == 1:
            with torch.no_grad():
                model.head.weight[0, 0] = float("nan")
        return model

    monkeypatch.setattr(ensemble_mod, "build_model", poisoned)
    cfgs = member_configs("transformer", 20, 0.0, members=((1e-3, 0), (5e-4, 1)))
    res = train_ensemble(cfgs, write_files=False)
    alone = train(copy.deepcopy(cfgs[0]), write_files=False)
    assert res[1].diverged == "loss became nan at step 1; lower train.lr or set train.grad_clip"
    assert res[1].final is None and res[1].losses == []
    assert res[0].losses == pytest.approx(alone.losses, abs=LOSS_ATOL) and not res[0].diverged


# ------------------------------------------------------------------------------------------------ the sweep


def test_the_sweep_groups_the_runs_of_a_cell():
    runs = build_runs("table3", get_budget("table3", "quick"), device_type="cuda")
    jobs = [_job(r, "out", "table3", False) for r in runs]
    groups = group_jobs(jobs)
    assert len(groups) == 7 * 4 and all(len(g["members"]) == 12 for g in groups)
    by_key = {r.key: r for r in runs}
    for g in groups:
        cell = {(by_key[m["key"]].model_label, by_key[m["key"]].task) for m in g["members"]}
        assert len(cell) == 1
        assert sorted((m["labels"]["lr"], m["labels"]["seed"]) for m in g["members"]) == sorted(
            (lr, s) for lr in (1e-2, 1e-3, 5e-4, 1e-4) for s in (0, 1, 2)
        )
    assert sorted(m["key"] for g in groups for m in g["members"]) == sorted(by_key)
    small = group_jobs(jobs[:12], max_members=5)
    assert [len(g["members"]) for g in small] == [5, 5, 2]
    # runs of mixers without a tested ensemble, and lone runs, stay single jobs
    f4 = [_job(r, "out", "figure4", False) for r in build_runs("figure4", get_budget("figure4", "quick"))]
    single = [j for j in group_jobs(f4) if "members" not in j]
    assert {j["config"]["model"]["mixer"] for j in single} == {"full_matrix_rnn"}


def comparable(res: dict) -> dict:
    """A result record without what differs between two trainings of one key (time, process, host)."""
    return {k: v for k, v in res.items() if k not in ("wall_seconds", "finished_at", "pid", "host")}


def test_sweep_with_ensembles_writes_the_single_runs_records(tmp_path, monkeypatch):
    grid = budgets_mod.Budget(6, (1e-3, 5e-4), (0, 1), batch_size=8, eval_size="small", test_size_small=32,
                              tiny=True, note="test")  # fmt: skip
    monkeypatch.setitem(budgets_mod.BUDGETS, "table3", {**budgets_mod.BUDGETS["table3"], "smoke": grid})
    only = "model=Transformer|sLSTM,task=parity"
    kw = dict(device="cpu", progress=False, only=only)
    one = reproduce("table3", "smoke", tmp_path / "single", ensemble=False, workers=1, log=lambda *a: None, **kw)
    said = []
    # two worker processes, a group each: the path GPU sweeps take
    ens = reproduce("table3", "smoke", tmp_path / "ens", ensemble=True, workers=2, log=said.append, **kw)
    assert "as 2 ensemble(s) of 8 runs and 0 single runs" in said
    assert one["exit_code"] == ens["exit_code"] == 0 and len(ens["trained"]) == 8
    assert sorted(one["trained"]) == sorted(ens["trained"])
    for key in one["trained"]:
        a = json.loads((tmp_path / "single" / "runs" / key / "result.json").read_text())
        b = json.loads((tmp_path / "ens" / "runs" / key / "result.json").read_text())
        fa, fb = a.pop("final"), b.pop("final")
        ha, hb = a.pop("history"), b.pop("history")
        assert comparable(a) == comparable(b)
        # losses to fp32 rounding: worker processes take fewer CPU threads, which reorders the matmuls' sums
        assert [{**h, "loss": pytest.approx(h["loss"], rel=1e-5)} for h in ha] == hb
        assert fa["accuracy"] == fb["accuracy"] and fa["loss"] == pytest.approx(fb["loss"], abs=1e-4)
    # and the same tables
    sa, sb = (
        json.loads(next((tmp_path / d).glob("table3-only-*/summary.json")).read_text()) for d in ("single", "ens")
    )
    assert sa["cells"].keys() == sb["cells"].keys()
    for cell in sa["cells"]:
        assert sa["cells"][cell]["best"] == pytest.approx(sb["cells"][cell]["best"], abs=1e-4), cell


# ------------------------------------------------------------------------------------------------ on a GPU

CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not CUDA, reason="needs a GPU (benchmarks/gpu_tests.sh)")
@pytest.mark.parametrize("mixer", list(MIXERS))
def test_graphed_members_follow_their_graphed_single_runs_and_repeat_bitwise_on_a_gpu(mixer):
    """The GPU path: bf16 autocast, the Triton kernels under the folding rules, one CUDA graph for all members,
    train.deterministic. An ensemble trained twice logs bitwise the same losses; members follow their single
    (graphed) runs: the first loss (same weights, same batch) to bf16 rounding, the next four to 2% (the tolerance
    of test_graphed's graphed-vs-eager comparison), and then learn as fast: the batched kernels round differently,
    and Adam, which normalises each gradient entry, turns those differences in near-zero entries into full-size
    steps, so trajectories separate (on the H100, DeltaNet and mLSTM by 1% at step 5, mLSTM by 3-4% at steps
    7-8). That members equal their single runs exactly is test_members_train_as_their_single_runs's claim, in fp32
    on the CPU."""
    _, _, clip = MIXERS[mixer]
    cfgs = member_configs(mixer, 60, clip, device="cuda", deterministic=True)
    for c in cfgs:
        c.model = ModelConfig.from_dict({**c.model.to_dict(), "d_model": 64, "n_layers": 2})
    first = train_ensemble(copy.deepcopy(cfgs), write_files=False)
    again = train_ensemble(copy.deepcopy(cfgs), write_files=False)
    for a, b, c in zip(first, again, cfgs, strict=True):
        assert a.losses == b.losses, c.name
        alone = train(copy.deepcopy(c), write_files=False)
        la, lb = torch.tensor(a.losses), torch.tensor(alone.losses)
        assert la[0].item() == pytest.approx(lb[0].item(), rel=5e-3), c.name  # same weights and batch: rounding
        assert torch.allclose(la[:5], lb[:5], rtol=2e-2, atol=2e-2), c.name
        assert la[-20:].mean() == pytest.approx(lb[-20:].mean().item(), rel=5e-2), c.name
