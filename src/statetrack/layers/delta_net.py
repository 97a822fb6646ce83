"""DeltaNet, Gated DeltaNet and DeltaProduct: the delta-rule family with eigenvalues down to ``min_eigenvalue``.

Per head, state S [K, V]; per token t and Householder step j = 1..n_h (n_h = 1 is DeltaNet):
    S <- g_t S;  S <- (I - beta_tj k_tj k_tj^T) S + beta_tj k_tj v_tj^T;  o_t = S^T q_t / sqrt(K)
with unit keys (per-head L2 norm) and beta = (1 - min_eigenvalue) * sigmoid(W_beta x), so the eigenvalue of
each factor along k, 1 - beta, lies in [min_eigenvalue, 1]. K = ``head_dim`` (default d_model / n_heads) and
V = ``expand_v`` * K (default K), as in flash-linear-attention's Gated DeltaNet. Gated DeltaNet's decay g_t in (0, 1] is
g = exp(-exp(A_log) * softplus(W_a x + dt_bias)) (as in Mamba-2). The layer follows flash-linear-attention's
DeltaNet as the paper used it: q/k/v projections, optional short conv (kernel 4) with SiLU, L2-normalised q and k,
per-head output RMSNorm (gated by SiLU(W_g x) if ``use_output_gate``), output projection.

The short conv + SiLU, the q/k L2 norm and the output norm run as fused Triton kernels on CUDA
(:func:`statetrack.ops.short_conv`, :func:`~statetrack.ops.l2_normalize`, :func:`~statetrack.ops.rms_norm_gated`;
one kernel each way, no fp32 copies of activations kept for the backward) and as their torch references elsewhere:
see ``DeltaNet.fused_ops``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from statetrack.ops import delta_rule, delta_rule_step, l2_normalize

from .base import Mixer, MixerSettings, RMSNorm, ShortConv, State, causal_conv
from .fused_linear import fused_project, project
from .registry import register_mixer

#: the layer ops' backend for each delta-rule ``backend`` setting (see ``DeltaNet.fused_ops``)
FUSED_OPS_FOR_BACKEND = {"triton": "triton", "torch": "torch", "naive": "torch"}


@dataclass
class DeltaNetSettings(MixerSettings):
    """DeltaNet's settings (by default K = V = d_model / n_heads per head).

    Attributes:
        n_heads: H; must divide d_model unless ``head_dim`` is given.
        head_dim: K, the key (and query) size per head; None: d_model / n_heads.
        expand_v: V = expand_v * K, the value size per head (must come out a whole number).
        min_eigenvalue: in [-1, 0]; beta = (1 - min_eigenvalue) * sigmoid(.) in [0, 1 - min_eigenvalue].
        use_output_gate: SiLU-gated output norm. use_short_conv / conv_size: the short conv on q, k, v (without
            it, SiLU on q, k, v as fla does). conv_bias: whether the short convs have a bias (fla's have none).
        qk_norm_eps: None: q and k are divided by their L2 norm; a float e: by sqrt(|.|^2 + e) (fla's 1e-6).
        norm_eps: the per-head output RMSNorm's epsilon.
        backend, algorithm, precision, chunk_size: passed to :func:`statetrack.ops.delta_rule` when set
            ("auto" / None: the op's own choice). ``backend`` also picks the layer's fused ops (short conv, q/k
            L2 norm, output norm): "triton" the Triton kernels, "torch" / "naive" their torch references, "auto" /
            "fla" triton on CUDA and torch elsewhere (``DeltaNet.fused_ops``).
    """

    n_heads: int = 4
    head_dim: int | None = None
    expand_v: float = 1.0
    min_eigenvalue: float = -1.0
    use_output_gate: bool = False
    use_short_conv: bool = True
    conv_size: int = 4
    conv_bias: bool = True
    qk_norm_eps: float | None = None
    norm_eps: float = 1e-6
    backend: str = "auto"
    algorithm: str = "auto"
    precision: str = "auto"
    chunk_size: int | None = None

    def check(self, d_model: int | None = None) -> None:
        # with an explicit head_dim the heads need not divide the width (fla's Gated DeltaNet: 6 x 256 in 2048)
        super().check(d_model if self.head_dim is None else None)
        if self.head_dim is not None and (
            isinstance(self.head_dim, bool) or not isinstance(self.head_dim, int) or self.head_dim < 1
        ):
            raise ValueError(f"head_dim must be an int >= 1 or None, got {self.head_dim!r}")
        if isinstance(self.expand_v, bool) or not isinstance(self.expand_v, int | float) or not self.expand_v > 0:
            raise ValueError(f"expand_v must be a number > 0, got {self.expand_v!r}")
        if d_model is not None:
            self.dims(d_model)
        if not isinstance(self.conv_bias, bool):
            raise TypeError(f"conv_bias must be a bool, got {self.conv_bias!r}")
        eps = self.qk_norm_eps
        if eps is not None and (isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < math.inf):
            raise ValueError(f"qk_norm_eps must be None or a finite float >= 0, got {eps!r}")

    def dims(self, d_model: int) -> tuple[int, int]:
        """(K, V): the key and value sizes per head at width ``d_model``."""
        K = self.head_dim if self.head_dim is not None else d_model // self.n_heads
        V = round(self.expand_v * K)
        if V < 1 or not math.isclose(self.expand_v * K, V):
            raise ValueError(f"expand_v = {self.expand_v} times head_dim K = {K} must be a whole number >= 1")
        return K, V


@dataclass
class GatedDeltaNetSettings(DeltaNetSettings):
    """Gated DeltaNet's settings: DeltaNet's, with the gated output norm on by default."""

    use_output_gate: bool = True


@dataclass
class DeltaProductSettings(DeltaNetSettings):
    """DeltaProduct's settings: DeltaNet's, plus n_h = ``num_householder`` factors per token and an optional
    scalar decay gate (``use_gate``: Gated DeltaProduct)."""

    num_householder: int = 2
    use_gate: bool = False


class BiaslessShortConv(ShortConv):
    """ShortConv without a bias parameter (fla's short convs have none); its ``bias`` reads as zeros, made on the
    fly so that nothing outside the state dict needs a value (Hugging Face loading leaves such buffers empty)."""

    def __init__(self, channels: int, kernel_size: int = 4):
        super().__init__(channels, kernel_size)
        del self.bias
        self.zero_bias = True

    def __getattr__(self, name: str):
        if name == "bias" and self.__dict__.get("zero_bias"):
            return self.weight.new_zeros(self.channels)
        return super().__getattr__(name)


@register_mixer("deltanet", DeltaNetSettings)
class DeltaNet(Mixer):
    """Delta-rule token mixer. x [B, T, D] -> [B, T, D]; state {"S": [B, H, K, V] fp32, "conv_*": [B, C, W-1]}
    (C: H K for q, n_h H K for k, n_h H V for v).

    ``DeltaNet(d_model, settings=None, **overrides)`` with :class:`DeltaNetSettings` (``DeltaNet(128, n_heads=4)``).
    """

    #: a scalar decay gate per head and token (Gated DeltaNet); DeltaProduct takes it from its settings
    gated = False
    #: backend of the short conv + SiLU, q/k L2 norm and output norm in ``forward``: "auto" (the Triton kernels on
    #: CUDA for bf16 / fp16 / fp32, the torch references elsewhere), "triton" or "torch". Set from the settings'
    #: ``backend`` (FUSED_OPS_FOR_BACKEND, else "auto"); assign to choose it alone. ``step`` (one token) always
    #: runs the torch references.
    fused_ops = "auto"

    def build(self, d_model: int, s: DeltaNetSettings) -> None:
        self.min_eigenvalue, self.n_heads = s.min_eigenvalue, s.n_heads
        self.head_dim, self.head_v_dim = s.dims(d_model)  # K, V
        self.qk_norm_eps = s.qk_norm_eps
        self.n_h, self.use_gate = getattr(s, "num_householder", 1), getattr(s, "use_gate", self.gated)
        self.use_output_gate, self.use_short_conv = s.use_output_gate, s.use_short_conv
        # op arguments the user set; "auto"/None leave the op's own choice
        chosen = dict(backend=s.backend, algorithm=s.algorithm, precision=s.precision, chunk_size=s.chunk_size)
        self.op_options = {k: v for k, v in chosen.items() if v not in ("auto", None)}
        self.fused_ops = FUSED_OPS_FOR_BACKEND.get(s.backend, "auto")
        D, n_h, n_heads, conv_size = d_model, self.n_h, s.n_heads, s.conv_size
        HK, HV = n_heads * self.head_dim, n_heads * self.head_v_dim  # all heads' keys, values
        self.q_proj = nn.Linear(D, HK, bias=False)
        self.k_proj = nn.Linear(D, n_h * HK, bias=False)
        self.v_proj = nn.Linear(D, n_h * HV, bias=False)
        self.b_proj = nn.Linear(D, n_h * n_heads, bias=False)
        if self.use_gate:
            self.a_proj = nn.Linear(D, n_heads, bias=False)
            # decay rates spread over heads, dt_bias = softplus^{-1}(dt) for dt log-uniform in [1e-3, 1e-1]
            self.A_log = nn.Parameter(torch.log(torch.empty(n_heads).uniform_(1.0, 16.0)))
            dt = torch.exp(torch.empty(n_heads).uniform_(math.log(1e-3), math.log(1e-1)))
            self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        if self.use_short_conv:
            Conv = ShortConv if s.conv_bias else BiaslessShortConv
            self.q_conv = Conv(HK, conv_size)
            self.k_conv = Conv(n_h * HK, conv_size)
            self.v_conv = Conv(n_h * HV, conv_size)
        if self.use_output_gate:
            self.g_proj = nn.Linear(D, HV, bias=False)
        self.o_norm = RMSNorm(self.head_v_dim, eps=s.norm_eps)
        self.o_proj = nn.Linear(HV, D, bias=False)
        for lin in (self.q_proj, self.k_proj, self.v_proj, self.b_proj, self.o_proj):
            nn.init.xavier_uniform_(lin.weight, gain=2**-2.5)

    # -- pieces shared by forward and step (any leading dims: [..., D]) ------------------------------------------

    def _convs(self) -> tuple[tuple[str, ShortConv], ...]:
        return (("conv_q", self.q_conv), ("conv_k", self.k_conv), ("conv_v", self.v_conv))

    def _step_projections(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """One token's projections {"q", "k", "v", "b", and "a" (gated), "g" (output gate)}: [B, out] each, as one
        matmul when decoding (:func:`~statetrack.layers.fused_linear.project`)."""
        names = ["q", "k", "v", "b"] + ["a"] * self.use_gate + ["g"] * self.use_output_gate
        return dict(zip(names, project(self, x, [getattr(self, f"{n}_proj") for n in names]), strict=True))

    def _qkv_step(self, p: dict[str, torch.Tensor], state: State, new: State):
        """One token's q, k, v [B, C] each from its projections ``p``, through the convs' step (new conv caches
        go into ``new``)."""
        q, k, v = p["q"], p["k"], p["v"]
        if not self.use_short_conv:
            return F.silu(q), F.silu(k), F.silu(v)  # fla's default qk activation when there is no conv
        out = []
        for (name, conv), t in zip(self._convs(), (q, k, v), strict=True):
            cache = state.get(name)
            if cache is None:
                cache = conv.init_state(t.shape[0], t.device, t.dtype)
            t, new[name] = conv.step(t, cache, self.fused_ops)
            out.append(t)
        return tuple(out)

    def _qkv_fused(self, x: torch.Tensor, state: State | None, new: State, cu_seqlens=None):
        """The forward's q, k, v as one matmul and one convolution over the concatenated channels: three times
        fewer (and larger) kernels on short sequences; the parameters stay the three modules of ``step``."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        sizes = [p.out_features for p in projs]
        qkv = fused_project(self, x, projs, cache=False)  # decoding caches its own set (step's projections)
        if not self.use_short_conv:
            return F.silu(qkv).split(sizes, -1)  # fla's default qk activation when there is no conv
        convs = self._convs()
        caches = None
        if state is not None and any(state.get(n) is not None for n, _ in convs):
            caches = torch.cat([state[n] if state.get(n) is not None else c.init_state(x.shape[0], x.device, x.dtype)
                                for n, c in convs], 1)  # fmt: skip
        w = torch.cat([c.weight[:, 0] for _, c in convs])
        b = torch.cat([c.bias for _, c in convs])
        qkv, cache = causal_conv(qkv, w, b, caches, cu_seqlens=cu_seqlens, backend=self.fused_ops)
        for (name, _), part in zip(convs, cache.split(sizes, 1), strict=True):
            new[name] = part
        return qkv.split(sizes, -1)

    def _unit(self, x: torch.Tensor, backend: str = "torch") -> torch.Tensor:
        """L2-normalise the last dim: x / |x|, or x / sqrt(|x|^2 + qk_norm_eps) (fla's kernels)."""
        return l2_normalize(x, self.qk_norm_eps, backend=backend)

    def _heads(self, x, q, k, v, backend: str = "torch", b=None, a=None):
        """q [..., H K], k [..., n_h H K], v [..., n_h H V] -> q [..., H, K]; k [..., n_h, H, K];
        v [..., n_h, H, V]; beta [..., n_h, H]; log_decay [..., H] or None. beta and the decay come from the
        projections ``b`` [..., n_h H] and ``a`` [..., H] where given, else from x [..., D]. ``backend``: the L2
        norm's."""
        lead, H, Kd, Vd, n_h = x.shape[:-1], self.n_heads, self.head_dim, self.head_v_dim, self.n_h
        q = self._unit(q.view(*lead, H, Kd), backend)
        k = self._unit(k.view(*lead, n_h, H, Kd), backend)
        v = v.view(*lead, n_h, H, Vd)
        ft = torch.promote_types(x.dtype, torch.float32)  # gates in fp32 even under bf16 autocast
        b = self.b_proj(x) if b is None else b
        beta = (1.0 - self.min_eigenvalue) * torch.sigmoid(b.to(ft)).view(*lead, n_h, H)
        log_decay = None
        if self.use_gate:
            a = self.a_proj(x) if a is None else a
            log_decay = -self.A_log.to(ft).exp() * F.softplus(a.to(ft) + self.dt_bias.to(ft))
        return q, k, v, beta, log_decay

    def _out(self, x, o, backend: str = "torch", gate=None):
        """o [..., H, V] -> [..., D]: per-head norm (optionally gated by ``gate``, else by the projection of x),
        then the output projection. ``backend``: the norm's."""
        if self.use_output_gate:
            gate = (self.g_proj(x) if gate is None else gate).view(o.shape)
        o = self.o_norm(o, gate, backend=backend)
        return self.o_proj(o.flatten(-2))

    # -- public API ---------------------------------------------------------------------------------------------

    def init_state(self, batch_size: int, device=None, dtype: torch.dtype = torch.float32) -> State:
        dev = self._device(device)
        st = {"S": torch.zeros(batch_size, self.n_heads, self.head_dim, self.head_v_dim, device=dev, dtype=dtype)}
        if self.use_short_conv:
            for name, conv in self._convs():
                st[name] = conv.init_state(batch_size, dev, dtype)
        return st

    #: takes packed documents (``cu_seqlens``) in one pass: the op and the conv respect the boundaries
    supports_cu_seqlens = True

    def forward(self, x: torch.Tensor, state: State | None = None, output_state: bool = False, cu_seqlens=None):
        """x [B, T, D] -> (y [B, T, D], state or None). With ``cu_seqlens`` [N + 1]: x is a packed row [1, T, D],
        the state (in and out) has one row per document."""
        if cu_seqlens is not None and state is not None and any(state.get(n) is not None for n, _ in self._convs()):
            raise ValueError("cu_seqlens with conv caches in the state: continue packed documents one by one")
        new: State = {}
        q, k, v = self._qkv_fused(x, state, new, cu_seqlens)
        q, k, v, beta, log_decay = self._heads(x, q, k, v, self.fused_ops)
        if self.n_h == 1:  # the op's DeltaNet layout
            k, v, beta = k[:, :, 0], v[:, :, 0], beta[:, :, 0]
        S0 = None if state is None else state.get("S")
        # Under autocast the L2 norm comes back in fp32 and v in bf16: the op wants one dtype for q, k, v (and
        # keeps its own state algebra in fp32 whatever autocast says).
        o, S = delta_rule(
            q.to(v.dtype), k.to(v.dtype), v, beta, log_decay=log_decay, initial_state=S0,
            output_final_state=output_state, cu_seqlens=cu_seqlens, **self.op_options,
        )  # fmt: skip
        y = self._out(x, o, self.fused_ops)
        if not output_state:
            return y, None
        new["S"] = S
        return y, new

    def step(self, x: torch.Tensor, state: State | None = None):
        """x [B, D] -> (y [B, D], new state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, self.state_dtype(x))
        new: State = {}
        p = self._step_projections(x)
        q, k, v = self._qkv_step(p, state, new)
        q, k, v, beta, log_decay = self._heads(x, q, k, v, self.fused_ops, p["b"], p.get("a"))
        if self.n_h == 1:
            k, v, beta = k[:, 0], v[:, 0], beta[:, 0]
        o, new["S"] = delta_rule_step(q.to(v.dtype), k.to(v.dtype), v, beta, state["S"], log_decay=log_decay)
        return self._out(x, o, self.fused_ops, p.get("g")), new

    @torch.no_grad()
    def transitions(self, x: torch.Tensor) -> torch.Tensor:
        """The state-transition matrices of each token: x [B, T, D] -> A [B, T, H, K, K] (fp64),
        A_t = g_t prod_j (I - beta_tj k_tj k_tj^T) acting on S (for eigenvalue checks)."""
        q, k, v = self._qkv_fused(x, None, {})
        _, k, _, beta, log_decay = self._heads(x, q, k, v)
        k, beta = k.double(), beta.double()
        eye = torch.eye(self.head_dim, dtype=torch.float64, device=x.device)
        A = eye.expand(*k.shape[:2], self.n_heads, self.head_dim, self.head_dim)
        for j in range(self.n_h):
            kj = k[:, :, j]
            A = (eye - beta[:, :, j, :, None, None] * kj[..., :, None] * kj[..., None, :]) @ A
        if log_decay is not None:
            A = A * log_decay.double().exp()[..., None, None]
        return A

    @torch.no_grad()
    def transition_eigenvalues(self, x: torch.Tensor) -> torch.Tensor:
        """The eigenvalues each token's transition has besides g_t: x [B, T, D] -> [B, T, H, n_h] (complex128).

        A_t = g_t P_t with P_t = prod_j (I - beta_tj k_tj k_tj^T) is g_t on the complement of the keys' span;
        on the span, P K = K M with M = (K^T K)^+ K^T P K (n_h x n_h), so the other eigenvalues are g_t eig(M):
        g_t (1 - beta_t) for DeltaNet (unit keys), the eigenvalues of a product of reflections for DeltaProduct,
        at n_h^2 K cost per token instead of K^3. With one key (n_h = 1), M = 1 - beta |k|^2 in closed form (0 for
        a zero key, as the pseudo-inverse gives); otherwise the small eigenproblems are solved on the CPU (batched
        eigvals on a GPU goes matrix by matrix)."""
        q, k, v = self._qkv_fused(x, None, {})
        _, k, _, beta, log_decay = self._heads(x, q, k, v)
        K = k.double().movedim(2, -1)  # [B, T, H, K, n_h]
        beta = beta.double().movedim(2, -1)  # [B, T, H, n_h]
        if self.n_h == 1:
            kk = K.square().sum((-2, -1))  # [B, T, H]
            ev = torch.where(kk > 0, 1 - beta[..., 0] * kk, 0.0)[..., None].to(torch.complex128)
        else:
            PK = K.clone()
            for j in range(self.n_h):  # apply the factors in token order: (I - b_j k_j k_j^T) to every column
                kj = K[..., j : j + 1]
                PK = PK - beta[..., j, None, None] * kj * (kj.transpose(-1, -2) @ PK)
            M = torch.linalg.pinv(K.transpose(-1, -2) @ K) @ (K.transpose(-1, -2) @ PK)
            ev = torch.linalg.eigvals(M.cpu()).to(M.device)
        if log_decay is not None:
            ev = ev * log_decay.double().exp()[..., None]
        return ev


@register_mixer("gated_deltanet", GatedDeltaNetSettings)
class GatedDeltaNet(DeltaNet):
    """DeltaNet with a scalar decay gate per head and token and a gated output norm (Yang et al., 2025)."""

    gated = True


@register_mixer("deltaproduct", DeltaProductSettings)
class DeltaProduct(DeltaNet):
    """DeltaNet with n_h Householder factors per token (Siems et al., 2025); ``num_householder`` defaults to 2."""
