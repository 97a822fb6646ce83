"""Training steps as CUDA graphs: padding to a fixed width changes nothing (every mixer, on the CPU), the config
is checked, and on a GPU a graphed run follows the eager one and resumes like it."""

from __future__ import annotations

import pytest
import torch

from statetrack.layers import MIXERS
from statetrack.models import ModelConfig, TokenClassifier
from statetrack.train import load_checkpoint, load_config, train
from statetrack.train.graphed import pad_batch
from statetrack.train.loop import masked_cross_entropy

from .standin_task import TinyParity
from .test_train import cfg_for

CUDA = torch.cuda.is_available()


def test_pad_batch_pads_right_and_refuses_longer_batches():
    x = torch.arange(6).reshape(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    px, py, pm = pad_batch(x, x, m, 5, pad_id=9)
    assert px.shape == (2, 5) and (px[:, 3:] == 9).all() and (py[:, :3] == x).all() and not pm[:, 3:].any()
    assert pad_batch(x, x, m, 3, 9)[0] is x
    with pytest.raises(ValueError, match="fixed length 2"):
        pad_batch(x, x, m, 2, 9)


@pytest.mark.parametrize("mixer", list(MIXERS))
def test_padding_to_fixed_width_changes_neither_loss_nor_gradients(mixer):
    """Why a graph may pad every batch to the longest training length: every mixer is causal and the loss is
    masked, so extra columns on the right leave the loss and every gradient unchanged."""
    torch.manual_seed(0)
    cfg = ModelConfig(mixer=mixer, vocab_size=5, d_model=16, n_layers=2, n_heads=2, min_eigenvalue=-1.0)
    model = TokenClassifier(cfg).double()
    x = torch.randint(0, 4, (3, 7))
    y = torch.randint(0, 2, (3, 7))
    m = torch.rand(3, 7) < 0.7
    out = []
    for batch in ((x, y, m), pad_batch(x, y, m, 12, pad_id=4)):
        model.zero_grad()
        loss = masked_cross_entropy(model(batch[0]).double(), batch[1], batch[2])
        loss.backward()
        out.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (l0, g0), (l1, g1) = out
    assert torch.allclose(l0, l1, rtol=1e-10, atol=1e-12)
    assert len(g0) == len(g1) > 0
    for a, b in zip(g0, g1, strict=True):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_cuda_graph_config_is_checked(tmp_path):
    with pytest.raises(ValueError, match="train.cuda_graph"):
        load_config(None, ["train.cuda_graph=maybe"]).train.validate()
    if not CUDA:
        with pytest.raises(ValueError, match="needs a CUDA device"):
            train(cfg_for(tmp_path, "train.steps=2", "train.cuda_graph=on", "train.device=cpu"), task=TinyParity())


GPU_RUN = ["model.mixer=deltanet", "model.n_heads=2", "train.device=cuda", "train.steps=30", "train.grad_clip=1.0",
           "train.ckpt_every=10", "train.eval_every=15"]  # fmt: skip


@pytest.mark.skipif(not CUDA, reason="needs a GPU (benchmarks/gpu_tests.sh)")
def test_graphed_run_follows_eager_and_resumes(tmp_path):
    eager = train(cfg_for(tmp_path / "e", *GPU_RUN, "train.cuda_graph=off"), task=TinyParity())
    graph = train(cfg_for(tmp_path / "g", *GPU_RUN, "train.cuda_graph=on"), task=TinyParity())
    # padding changes the order of a few reductions, bf16 autocast amplifies it: close, not bitwise
    assert torch.allclose(torch.tensor(graph.losses), torch.tensor(eager.losses), rtol=2e-2, atol=2e-2)
    part = train(cfg_for(tmp_path / "r", *GPU_RUN, "train.cuda_graph=on"), task=TinyParity(), stop_after=10)
    rest = train(cfg_for(tmp_path / "r", *GPU_RUN, "train.cuda_graph=on"), task=TinyParity(), resume=True)
    assert part.step == 10 and rest.step == 30
    assert torch.allclose(torch.tensor(rest.losses), torch.tensor(graph.losses), rtol=1e-3, atol=1e-4)
    # AdamW's state lives on across replays: its step count is the run's (a state created during capture would
    # be reset by every replay)
    for run in ("g", "r"):
        ck = load_checkpoint(tmp_path / run / "checkpoint.pt")
        assert all(float(st["step"]) == 30 for st in ck["optimizer"]["state"].values())
