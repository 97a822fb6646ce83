"""One rank of the two-process pretraining test (run by torchrun; see test_pretrain_distributed.py): an
uninterrupted run, then a run that crashes between checkpoints, is resumed, gets SIGTERM on one rank only, and
is resumed to the end. Usage: torchrun --nproc-per-node 2 pretrain_worker.py DATA ROOT"""

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict  # noqa: E402

from statetrack.lm.pretrain import pretrain  # noqa: E402
from tests.lm.pretrain_helpers import data_api, tiny_config  # noqa: E402


class Crash(Exception):
    pass


def main(data: Path, root: Path) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank, api, report = dist.get_rank(), data_api(), {}

    ref = pretrain(tiny_config(data, root / "ref"), data_api=api)
    full = get_model_state_dict(ref.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        torch.save(full, root / "ref_model.pt")

    def crash(step):
        if step == 5:
            raise Crash("simulated kill -9")

    def term(step):
        if step == 7 and rank == 1:  # one rank only: the others must stop at the same step
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        pretrain(tiny_config(data, root / "int"), on_step=crash, data_api=api)
    except Crash:
        report["crashed"] = True
    second = pretrain(tiny_config(data, root / "int"), resume=True, on_step=term, data_api=api)
    report.update(stopped_by=second.stopped_by, stopped_at=second.step, resumed_at=second.step - second.steps_run)
    third = pretrain(tiny_config(data, root / "int"), resume=True, data_api=api)
    report.update(final_step=third.step, final_resumed_at=third.step - third.steps_run)
    if rank == 0:
        (root / "report.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
