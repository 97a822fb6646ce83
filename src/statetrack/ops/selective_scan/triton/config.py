"""Launch settings of the selective scan's Triton kernels: which algorithm, and its blocks, warps and checkpoints.

Two algorithms: ``tiles`` (``tiles.py``: parallel along time inside tiles of BT steps, for a few long sequences) and
``steps`` (``steps.py``: one step at a time per program, parallel across sequences and channels only, for many short
ones). :func:`auto_algorithm` states the rule that ``algorithm="auto"`` follows; the tuning keywords of each are
:data:`TILES_KEYS` and :data:`STEPS_KEYS` (``selective_scan(triton_config=...)`` takes them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..._triton import cdiv, pow2

ALGORITHMS = ("tiles", "steps")
# the steps algorithm where there are at least this many work items (sequence x channel block) per multiprocessor
STEPS_MIN_ITEMS_PER_SM = 16
TILES_KEYS = ("block_t", "block_d", "block_t_bwd", "block_d_bwd", "checkpoint", "warps_fwd", "warps_bwd",
              "stages_fwd", "stages_bwd")  # fmt: skip
STEPS_KEYS = ("block_d_steps", "checkpoint_steps", "warps_steps", "programs_per_sm", "prefetch_steps", "unroll_steps")


@dataclass(frozen=True)
class SelectiveConfig:
    """``algorithm``: "tiles" or "steps". Tiles: BT steps x BDm channels x BN >= N states of the forward and
    backward, the checkpoint interval CK in steps (a multiple of both BT), warps and pipeline stages. Steps: BD_steps
    channels per work item, a checkpoint every CK_steps steps, warps per program, the persistent grid's program
    count, whether the next step's inputs are loaded ahead and the time loops' unroll factor (Triton's
    ``loop_unroll_factor``: neighbouring steps' reductions may overlap; 1 = none)."""

    BN: int
    BT_fwd: int
    BD_fwd: int
    BT_bwd: int
    BD_bwd: int
    CK: int
    warps_fwd: int = 4
    warps_bwd: int = 4
    stages_fwd: int = 2
    stages_bwd: int = 2
    algorithm: str = "tiles"
    BD_steps: int = 32
    CK_steps: int = 8
    warps_steps: int = 1
    programs: int = 1024
    prefetch_steps: bool = True
    unroll_steps: int = 1


def steps_block_d(N: int, block_d_steps: int | None = None) -> int:
    """Channels per work item of the steps kernels: about 16 state elements per thread of a one-warp program."""
    return pow2(block_d_steps) if block_d_steps else max(4, min(32, 512 // max(2, pow2(N))))


def auto_algorithm(Bt: int, Dm: int, N: int, n_sm: int | None, block_d_steps: int | None = None) -> str:
    """The rule of ``algorithm="auto"``: "steps" where there are at least ``STEPS_MIN_ITEMS_PER_SM`` work items
    (sequence x block of :func:`steps_block_d` channels) per multiprocessor of the GPU, else "tiles". Under
    Triton's interpreter (``n_sm`` None) always "tiles". Table 3's Mamba (1,024 x 8 items on 132 SMs) takes the
    steps, 8 sequences of 2,048 channels the tiles (docs/kernels.md, "Which path runs")."""
    many = n_sm is not None and Bt * cdiv(Dm, steps_block_d(N, block_d_steps)) >= STEPS_MIN_ITEMS_PER_SM * n_sm
    return "steps" if many else "tiles"


def pick_algorithm(algorithm: str, Bt: int, Dm: int, N: int, n_sm: int | None, config: dict) -> str:
    """Resolve ``algorithm`` ("auto" by :func:`auto_algorithm`) and refuse ``config`` keys of the other one."""
    if algorithm not in ("auto", *ALGORITHMS):
        raise ValueError(f"algorithm must be one of {['auto', *ALGORITHMS]} on the triton backend, got {algorithm!r}")
    chosen = auto_algorithm(Bt, Dm, N, n_sm, config.get("block_d_steps")) if algorithm == "auto" else algorithm
    foreign = [k for k in config if k in (STEPS_KEYS if chosen == "tiles" else TILES_KEYS)]
    if foreign:
        how = "chosen by algorithm='auto'" if algorithm == "auto" else "named"
        raise ValueError(f"triton_config keys {foreign} do not apply to the {chosen!r} algorithm ({how}); "
                         f"its keys are {list(TILES_KEYS if chosen == 'tiles' else STEPS_KEYS)}")  # fmt: skip
    return chosen


def selective_config(
    Bt: int,
    Dm: int,
    N: int,
    *,
    n_sm: int | None = None,
    algorithm: str = "auto",
    block_t: int | None = None,
    block_d: int | None = None,
    block_t_bwd: int | None = None,
    block_d_bwd: int | None = None,
    checkpoint: int = 64,
    block_d_steps: int | None = None,
    checkpoint_steps: int = 8,
    warps_steps: int = 1,
    programs_per_sm: int = 16,
    prefetch_steps: bool = True,
    unroll_steps: int = 1,
    **kw,
) -> SelectiveConfig:
    """Tiles by register budget: about 4096 state elements per forward tile and 2048 per backward tile (the backward
    holds ~4x the forward's live [BT, BDm, N] tensors), 32 channels wide when N allows (so that u, delta, z rows are
    64-byte bf16 segments and the dB / dC shares number Dm / 32), narrower (down to 8) when there would be fewer
    programs than ``n_sm`` multiprocessors. On sm_90 (offline compile, 4 warps, N = 16) the forward needs ~126
    registers per thread, the backward ~245, neither spills. ``checkpoint``: steps between the forward's saved
    states. ``kw``: warps_fwd, warps_bwd, stages_fwd, stages_bwd.

    ``algorithm="auto"`` follows :func:`auto_algorithm`; the steps kernels' persistent grid has ``programs_per_sm``
    programs per multiprocessor (in all, under the interpreter)."""
    BN = max(2, pow2(N))
    if BN > 256:
        raise ValueError(f"the triton selective scan takes state sizes N up to 256, got N = {N}")

    def tile(elems: int, max_t: int, bt: int | None, bd: int | None) -> tuple[int, int]:
        if bd:
            BD = pow2(bd)
        else:
            BD = min(max(4, pow2(Dm)), 32, max(4, elems // (4 * BN)))
            while n_sm and BD > 8 and Bt * cdiv(Dm, BD) < n_sm:
                BD //= 2
        BT = pow2(bt) if bt else max(1, min(max_t, elems // (BD * BN)))
        return BT, BD

    # each thread holds whole columns of time (the scans are in-register), so BT is capped too
    BT_f, BD_f = tile(4096, 16, block_t, block_d)
    BT_b, BD_b = tile(2048, 8, block_t_bwd, block_d_bwd)
    CK = max(pow2(checkpoint), BT_f, BT_b)
    if algorithm == "auto":
        algorithm = auto_algorithm(Bt, Dm, N, n_sm, block_d_steps)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be 'auto', 'tiles' or 'steps', got {algorithm!r}")
    steps = dict(BD_steps=steps_block_d(N, block_d_steps), CK_steps=max(1, checkpoint_steps), warps_steps=warps_steps,
                 programs=max(1, programs_per_sm * (n_sm or 1)), prefetch_steps=prefetch_steps,
                 unroll_steps=max(1, unroll_steps))  # fmt: skip
    return SelectiveConfig(BN=BN, BT_fwd=BT_f, BD_fwd=BD_f, BT_bwd=BT_b, BD_bwd=BD_b, CK=CK, algorithm=algorithm,
                           **steps, **kw)  # fmt: skip


def fit_checkpoint(cfg: SelectiveConfig, T: int) -> SelectiveConfig:
    """A sequence shorter than the checkpoint interval gets one chunk of just enough tiles: the backward walks
    every tile of a chunk, and at T = 40 (Table 3) the default CK = 64 would have it walk 16 tiles of 4 steps for
    10 that hold steps. Only with gradients (a training shape is fixed, so this costs one compile, not one per
    length); CK stays a multiple of both tiles. The steps algorithm walks every step of its chunks too: T is cut
    into equal chunks of at most CK_steps (CK_steps = 8 and T = 20: 7 + 7 + 6 steps, not 8 + 8 + 4 and 4 of
    nothing)."""
    unit = max(cfg.BT_fwd, cfg.BT_bwd)  # powers of two: the larger is a multiple of the smaller
    ck_steps = cdiv(T, cdiv(T, cfg.CK_steps)) if T > 0 else cfg.CK_steps  # equal chunks: none mostly past T
    return replace(cfg, CK=min(cfg.CK, max(unit, cdiv(T, unit) * unit)), CK_steps=ck_steps)
