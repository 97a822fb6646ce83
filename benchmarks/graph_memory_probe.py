"""Which memory outside its own pool does a graphed training step use? (GPU diagnosis, not a test.)

    python benchmarks/graph_memory_probe.py [--mixer deltanet] [--keep-cache] [--out FILE]

Builds the graphed step of the training loop (forward, loss, backward, clipping, AdamW) for a small
TokenClassifier, then tries three probes:
0. "liveness": during the capture, a dispatch mode records every CUDA tensor a captured op reads that no captured
   op wrote (the graph's external inputs); after it, those whose storage has been freed are printed with the op
   that reads them and where (the graph keeps reading their addresses at every replay).
1. "poke": every block the caching allocator holds free in its regular pool is filled with NaN through a raw
   pointer, one block at a time, and the step replayed twice from the same state: a NaN loss names a block the
   graph reads; the allocator's history (torch.cuda.memory._record_memory_history) prints who allocated it.
2. "realloc": the free blocks are instead handed out again as new tensors filled with NaN (what any allocation
   after the capture does), and the step replayed twice.
What the H100 showed (2026-11-24, torch 2.11): poke finds no block; realloc makes the second replay's update NaN
(zeros give a zero update) for the Transformer, DeltaNet and sLSTM alike, with fused, foreach or single-tensor
AdamW, with autocast off, with cuBLAS workspaces off; graphs without the optimizer step are unaffected (though there
the backward's result never reaches the loss). So the graph uses memory that was free before the capture and that
torch.cuda.graph's empty_cache() gave back to the driver: --keep-cache skips that empty_cache, so that the poke can
find it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_iter

from report import say, start_gpu_report  # benchmarks/report.py (this script's folder is on sys.path)


def _our_frames() -> list[str]:
    """The Python stack without PyTorch's own frames (a backward op, run by autograd's thread, has none)."""
    return [f for f in traceback.format_stack(limit=60)[:-2] if "/torch/" not in f][-6:]


class _CaptureInputs(TorchDispatchMode):
    """While a CUDA graph is being captured, remember every CUDA tensor an op reads that no captured op wrote:
    the graph's external inputs, with a weak reference to each one's storage, the op and the Python stack."""

    def __init__(self):
        super().__init__()
        self.written: set[int] = set()
        self.inputs: dict[int, tuple] = {}  # data_ptr -> (storage weakref, op, shape, dtype, stack)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if torch.cuda.is_current_stream_capturing():
            for t in tree_iter((args, kwargs or {})):
                if isinstance(t, torch.Tensor) and t.is_cuda and t.data_ptr() and t.data_ptr() not in self.written:
                    self.inputs.setdefault(t.data_ptr(), (weakref.ref(t.untyped_storage()), str(func), tuple(t.shape),
                                                          t.dtype, _our_frames()))  # fmt: skip
            for t in tree_iter(out):
                if isinstance(t, torch.Tensor) and t.is_cuda:
                    self.written.add(t.data_ptr())
        return out

    def dead(self) -> list[tuple]:
        """The external inputs whose storage is gone: the graph still reads their addresses."""
        return [(ptr, *info[1:]) for ptr, info in self.inputs.items() if info[0]() is None]


class _Raw:
    """A float32 view of raw device memory [address, address + nbytes) for torch.as_tensor."""

    def __init__(self, address: int, nbytes: int):
        self.__cuda_array_interface__ = {"shape": (nbytes // 4,), "typestr": "<f4", "data": (address, False),
                                         "version": 3}  # fmt: skip


def build(mixer: str):
    """The graphed step and its model/optimiser, and a fixed batch."""
    from statetrack.models import ModelConfig, TokenClassifier
    from statetrack.train.graphed import GraphedStep, autocast_factory, make_step
    from statetrack.train.loop import masked_cross_entropy, param_groups

    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = TokenClassifier(ModelConfig(mixer=mixer, vocab_size=6, d_model=128, n_layers=2, n_heads=4)).to(dev)
    x = torch.randint(0, 5, (1024, 40), device=dev)
    y, m = torch.randint(0, 2, (1024, 40), device=dev), torch.ones(1024, 40, dtype=torch.bool, device=dev)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=torch.tensor(1e-3, device=dev), fused=True, capturable=True)
    step = make_step(model, model, opt, masked_cross_entropy, 1.0, autocast_factory("cuda", True, True))
    return GraphedStep(step, model, opt, (x, y, m)), model, opt, (x, y, m)


def free_blocks(snapshot: dict) -> list[tuple[int, int]]:
    """(address, bytes) of the free blocks of the regular pool, largest first."""
    out = [(b["address"], b["size"]) for seg in snapshot["segments"] if tuple(seg.get("segment_pool_id", (0, 0))) ==
           (0, 0) for b in seg["blocks"] if b["state"] == "inactive"]  # fmt: skip
    return sorted(out, key=lambda t: -t[1])


def history(snapshot: dict, address: int, nbytes: int) -> list[str]:
    """The allocator events that touched [address, address + nbytes), with their Python stacks."""
    lines = []
    for ev in snapshot["device_traces"][0]:
        a, s = ev["addr"], ev.get("size", 0)
        if a < address + nbytes and address < a + max(s, 1) and ev["action"] in ("alloc", "free_requested"):
            lines.append(f"{ev['action']} {hex(a)} {s} B")
            py = [f for f in ev["frames"] if f["filename"].endswith(".py")]
            lines += [f"    {f['filename']}:{f['line']} {f['name']}" for f in py]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixer", default="deltanet")
    p.add_argument("--keep-cache", action="store_true", help="no empty_cache() before the capture")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not start_gpu_report(a.out):
        return 2
    if a.keep_cache:
        torch.cuda.empty_cache = lambda: None  # torch.cuda.graph calls it before capturing
    torch.cuda.memory._record_memory_history(max_entries=500_000)
    with _CaptureInputs() as seen:  # records only while the capture runs (warm-up steps are not captured)
        graph, model, opt, batch = build(a.mixer)
    torch.cuda.synchronize()
    gc.collect()
    dead = seen.dead()
    say(f"# graphed step ({a.mixer}): {len(seen.inputs)} external inputs of the captured ops, {len(dead)} freed\n")
    for ptr, op, shape, dtype, stack in dead:
        say(f"FREED {hex(ptr)} {list(shape)} {dtype}, read by {op}, captured at:")
        say("".join(stack) or "    (no frame of ours: a backward op)\n")
    snap = torch.cuda.memory._snapshot()
    saved_model = {k: v.cpu() for k, v in model.state_dict().items()}  # on the host: no device allocation
    saved_opt = {p: {k: v.cpu() for k, v in st.items()} for p, st in opt.state.items()}

    def replay_twice() -> tuple[float, float]:
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(saved_model[k])
            for p, st in opt.state.items():
                for k, v in st.items():
                    v.copy_(saved_opt[p][k])
        return float(graph(*batch)[0].detach()), float(graph(*batch)[0].detach())

    blocks = free_blocks(snap)
    say(f"\n{len(blocks)} free blocks in the regular pool after the capture")
    say(f"clean replays: losses {replay_twice()}")
    read = []
    for address, nbytes in blocks:
        if nbytes < 4:
            continue
        view = torch.as_tensor(_Raw(address, nbytes), device="cuda")
        keep = view.cpu()
        view.fill_(float("nan"))
        l1, l2 = replay_twice()
        view.copy_(keep)
        if l2 != l2:
            read.append((address, nbytes))
        say(f"poke {hex(address)} {nbytes} B: losses {l1:.4f} {l2:.4f}{'  <- READ BY THE GRAPH' if l2 != l2 else ''}")
    for address, nbytes in read:
        say(f"\n## who held {hex(address)} ({nbytes} B)\n")
        say("\n".join(history(snap, address, nbytes)) or "(no allocator event recorded)")
    junk = [torch.full((n // 4,), float("nan"), device="cuda") for _, n in blocks if n >= 4]
    say(f"\nrealloc: {len(junk)} NaN tensors sized as the free blocks; replays: losses {replay_twice()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
