"""The paper's positive results as hand-set LRNNs that run on the library's ops (Section 3 of the paper).

Every construction maps a batch of words, ``letters`` [B, T] (long, in the construction's own alphabet), to the
label after each prefix, [B, T] long, computed from the LRNN state alone through the paper's decoder. The state
recurrence is always :func:`statetrack.ops.delta_rule` (or :func:`statetrack.ops.diag_scan` for the scalar
parity recurrence); the Python here only builds the per-letter factors and decodes.

| class | statement | layers | transition per letter |
|---|---|---|---|
| :class:`ScalarParity` | Sec. 4.1 / Thm 1 | 1, scalar | a(1) = -1, b(1) = 1 (diag_scan) |
| :class:`HouseholderParity` | Thm 3 (parity) | 1, K = 1 | A(1) = 1 - 2 k k^T = -1 (one reflection) |
| :class:`CyclicRotation` | Thm 3 (Z_m) | 1, K = 2 | R(2 pi w / m) = H(2 pi w / m) H(0) (two reflections) |
| :class:`CyclicReflections` | Thm 6 (App. D) | 2, K = 1 and 2 | one reflection per token and layer |
| :class:`PermutationGroupLRNN` | Thm 3 (groups) | 1, K = n | product of swap reflections, k - 1 per letter |
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from statetrack.tasks import permutations

from ._lrnn import FactorTable, reflection_key, run_layer, swap_key


def _check_letters(letters: torch.Tensor, alphabet_size: int) -> torch.Tensor:
    if not isinstance(letters, torch.Tensor) or letters.dtype not in (torch.int64, torch.int32):
        raise TypeError("letters must be an integer torch.Tensor of shape [B, T]")
    if letters.dim() != 2:
        raise ValueError(f"letters must have shape [B, T], got {list(letters.shape)}")
    if letters.numel() and (int(letters.min()) < 0 or int(letters.max()) >= alphabet_size):
        raise ValueError(
            f"letters must lie in [0, {alphabet_size}), got values in " f"[{int(letters.min())}, {int(letters.max())}]"
        )
    return letters.long()


class Construction:
    """Common interface: ``__call__(letters [B, T]) -> labels [B, T]`` plus a description of the model."""

    name = ""
    statement = ""
    alphabet_size = 0

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "statement": self.statement}


class ScalarParity(Construction):
    """Parity by the scalar recurrence of Section 4.1: h_t = a(x_t) h_{t-1} + b(x_t), h_0 = 0, y_t = h_t, with
    a(0) = 1, b(0) = 0 and a(1) = -1, b(1) = 1 (so x = 1 maps h to 1 - h). Runs on :func:`diag_scan`.

    Letters: 0, 1. Labels: the parity of the number of 1s in the prefix.
    """

    name = "parity, scalar recurrence (diag_scan)"
    statement = "Thm 1 / Sec. 4.1: parity needs a(1) = -1"
    alphabet_size = 2

    def __init__(self, dtype: torch.dtype = torch.float32, backend: str = "auto"):
        self.dtype, self.backend = dtype, backend

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:
        from statetrack.ops import diag_scan

        x = _check_letters(letters, 2)
        a = torch.tensor([1.0, -1.0], dtype=self.dtype)[x]
        b = torch.tensor([0.0, 1.0], dtype=self.dtype)[x]
        h, _ = diag_scan(a, b, backend=self.backend)
        return h.round().long()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "layers": 1,
            "state_dim": 1,
            "a": {"0": 1.0, "1": -1.0},
            "b": {"0": 0.0, "1": 1.0},
        }


class HouseholderParity(Construction):
    """Parity as in Theorem 3's proof: H_0 = -1, A(0) = 1, A(1) = -1, B = 0, decoder g(1) = 1, g(-1) = 0.

    A(1) = 1 - beta k k^T with k = 1, beta = 2: a one-dimensional DeltaNet step with eigenvalue -1.
    Letters: 0, 1. Labels: parity of the prefix.
    """

    name = "parity, DeltaNet reflection (K = 1)"
    statement = "Thm 3: parity with A(1) = -1"
    alphabet_size = 2

    def __init__(self, dtype: torch.dtype = torch.float32, backend: str = "naive"):
        self.dtype, self.backend = dtype, backend
        self.table = FactorTable([[], [([1.0], 2.0, 0.0)]], dim=1)

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:
        x = _check_letters(letters, 2)
        h = run_layer(self.table, x, torch.tensor([-1.0]), torch.eye(1), dtype=self.dtype, backend=self.backend)
        return (h[..., 0] > 0).long()

    def describe(self) -> dict:
        return {**super().describe(), "layers": 1, "state_dim": 1, "householders_per_token": 1}


class _Cyclic(Construction):
    """The Z_m constructions: letters 0..m-1 (add w), labels the prefix sum mod m."""

    def __init__(self, m: int, dtype: torch.dtype, backend: str, name: str):
        if m < 2:
            raise ValueError(f"m must be >= 2, got {m}")
        self.m, self.dtype, self.backend = m, dtype, backend
        self.alphabet_size = m
        self.name = name


class CyclicRotation(_Cyclic):
    """Z_m (running sum mod m) in one layer of 2x2 rotations, each the product of two reflections (Thm 3).

    H_0 = (1, 0)^T, A(w) = R(2 pi w / m) = H(2 pi w / m) H(0), two Householder steps per token (DeltaProduct with
    n_h = 2, beta = 2): first u_1 = (0, 1) (H(0)), then u_2 the normal of the line at angle pi w / m. Decoder:
    argmax_i D_i^T H_t with D_i = R(2 pi i / m) H_0, read by m heads whose queries are the D_i.
    Letters: 0..m-1 (add w). Labels: the prefix sum mod m.
    """

    statement = "Thm 3: Z_m by rotations (2 reflections per token)"

    def __init__(self, m: int, dtype: torch.dtype = torch.float32, backend: str = "naive"):
        super().__init__(m, dtype, backend, f"Z_{m}, rotations (DeltaProduct n_h = 2)")
        self.table = FactorTable(
            [[(reflection_key(0.0), 2.0, 0.0), (reflection_key(2 * math.pi * w / m), 2.0, 0.0)] for w in range(m)],
            dim=2,
        )
        ang = torch.arange(m, dtype=torch.float64) * 2 * math.pi / m
        self.decoder = torch.stack([ang.cos(), ang.sin()], dim=-1)  # D_i = R(2 pi i / m) (1, 0)^T

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:
        x = _check_letters(letters, self.m)
        scores = run_layer(
            self.table, x, torch.tensor([1.0, 0.0]), self.decoder, dtype=self.dtype, backend=self.backend
        )
        return scores.argmax(-1)

    def describe(self) -> dict:
        return {**super().describe(), "layers": 1, "state_dim": 2, "householders_per_token": 2, "m": self.m}


class CyclicReflections(_Cyclic):
    """Z_m in two layers with a single reflection per token each (Theorem 6, Appendix D).

    Layer 1 (K = 1): h_0 = 0, h_t = -h_{t-1} + 1 (one DeltaNet step, k = 1, beta = 2, v = 1/2), output
    (x_t, t mod 2). Layer 2 (K = 2): h_0 = d_0 = (1, 0)^T, h_t = H(theta(x_t, t mod 2)) h_{t-1} with
    theta(i, 1) = (1 - 2i) pi / m, theta(i, 0) = (1 + 2i) pi / m and H(alpha) the reflection about the line at
    angle alpha / 2. States alternate between c_j = R(-2 j pi / m) H(pi / m) d_0 (odd t) and d_j = R(2 j pi / m) d_0
    (even t); decoder argmax_i max(c_i^T h, d_i^T h), read by 2m heads.
    Letters: 0..m-1. Labels: the prefix sum mod m.
    """

    statement = "Thm 6: Z_m in 2 layers of single reflections"

    def __init__(self, m: int, dtype: torch.dtype = torch.float32, backend: str = "naive"):
        super().__init__(m, dtype, backend, f"Z_{m}, 2 DeltaNet layers")
        self.layer1 = FactorTable([[([1.0], 2.0, 0.5)]], dim=1)  # h <- (1 - 2) h + 2 * 1 * 1/2

        def theta(i: int, odd: int) -> float:
            return (1 - 2 * i) * math.pi / m if odd else (1 + 2 * i) * math.pi / m

        # layer-2 letter id = 2 * x + (t mod 2)
        self.layer2 = FactorTable([[(reflection_key(theta(i, p)), 2.0, 0.0)] for i in range(m) for p in (0, 1)], dim=2)
        j = torch.arange(m, dtype=torch.float64)
        d = torch.stack([(2 * j * math.pi / m).cos(), (2 * j * math.pi / m).sin()], -1)
        # c_j = R(-2 j pi / m) H(pi / m) d_0 = H((1 - 2j) pi / m) d_0: the vector at angle (1 - 2j) pi / m
        c = torch.stack([((1 - 2 * j) * math.pi / m).cos(), ((1 - 2 * j) * math.pi / m).sin()], -1)
        self.decoder = torch.cat([c, d], dim=0)  # [2m, 2]

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:
        x = _check_letters(letters, self.m)
        B, T = x.shape
        h1 = run_layer(
            self.layer1, torch.zeros_like(x), torch.zeros(1), torch.eye(1), dtype=self.dtype, backend=self.backend
        )
        parity = h1[..., 0].round().long()  # layer 1's output: t mod 2
        scores = run_layer(
            self.layer2, 2 * x + parity, torch.tensor([1.0, 0.0]), self.decoder, dtype=self.dtype, backend=self.backend
        )
        best = torch.maximum(scores[..., : self.m], scores[..., self.m :])
        return best.argmax(-1)

    def describe(self) -> dict:
        return {**super().describe(), "layers": 2, "state_dim": [1, 2], "householders_per_token": [1, 1], "m": self.m}


class PermutationGroupLRNN(Construction):
    """Any permutation group automaton in one layer (Theorem 3): letters act on n points by permutations.

    H_0 = (1, 2, ..., n)^T, B = 0, A(w) = permutation matrix of w, written as the product of the swap reflections
    I - 2 k k^T, k = (e_i - e_j) / sqrt(2) of :func:`permutations.transpositions` (n - #cycles of w <= k - 1 of them for
    a letter moving k points; n_h is their maximum over letters, shorter letters are padded with beta = 0).
    n heads with queries e_1..e_n read H_t; the decoder reads the prefix product off it: H_t[y(i)] = i + 1.

    Args:
        letters: the permutations (one-line, 0-based) that the letters act as.
        elements: the labels: permutation -> label id is its index here (default: the generated group).
    """

    statement = "Thm 3: group automaton, swap reflections"

    def __init__(
        self,
        letters: Sequence[Sequence[int]],
        elements: Sequence[Sequence[int]] | None = None,
        *,
        name: str = "",
        dtype: torch.dtype = torch.float32,
        backend: str = "naive",
    ):
        self.letters = [tuple(p) for p in letters]
        if not self.letters:
            raise ValueError("need at least one letter")
        self.n = len(self.letters[0])
        if any(len(p) != self.n or not permutations.is_permutation(p) for p in self.letters):
            raise ValueError("every letter must be a permutation of the same n points, in one-line notation")
        self.elements = [tuple(p) for p in elements] if elements is not None else permutations.generate(self.letters)
        self.index = {p: i for i, p in enumerate(self.elements)}
        self.alphabet_size = len(self.letters)
        self.dtype, self.backend = dtype, backend
        n = self.n
        self.table = FactorTable(
            [[(swap_key(a, b, n), 2.0, 0.0) for a, b in permutations.transpositions(p)] for p in self.letters], dim=n
        )
        self.max_moved = max(permutations.moved_points(p) for p in self.letters)
        self.name = name or f"permutation group on {n} points"

    @property
    def householders_per_token(self) -> int:
        return self.table.n_h

    def states(self, letters: torch.Tensor) -> torch.Tensor:
        """The LRNN state H_t, [B, T, n] (fp32)."""
        x = _check_letters(letters, self.alphabet_size)
        h0 = torch.arange(1, self.n + 1, dtype=torch.float64)
        eye = torch.eye(self.n, dtype=torch.float64)
        return run_layer(self.table, x, h0, eye, dtype=self.dtype, backend=self.backend)

    def permutations(self, letters: torch.Tensor) -> torch.Tensor:
        """Decoded prefix products, [B, T, n] long (one-line notation); -1 rows where H_t is not a permutation
        of (1..n) after rounding (which would be a numerical failure)."""
        h = self.states(letters)
        lab = h.round().long() - 1  # lab[i] = the point whose label sits at position i
        ok = (lab >= 0) & (lab < self.n)
        lab = lab.clamp(0, self.n - 1)
        y = torch.full_like(lab, -1)
        pos = torch.arange(self.n).expand_as(lab)
        y.scatter_(-1, lab, pos)  # y[lab[i]] = i
        valid = ok.all(-1) & (y >= 0).all(-1)
        return torch.where(valid[..., None], y, torch.full_like(y, -1))

    def __call__(self, letters: torch.Tensor) -> torch.Tensor:
        """Label ids (index into ``elements``) of the prefix products, [B, T] long; -1 if not decodable."""
        perms = self.permutations(letters)
        flat = perms.reshape(-1, self.n).tolist()
        ids = [self.index.get(tuple(p), -1) for p in flat]
        return torch.tensor(ids, dtype=torch.long).reshape(perms.shape[:-1])

    def describe(self) -> dict:
        return {
            **super().describe(),
            "layers": 1,
            "state_dim": self.n,
            "points": self.n,
            "householders_per_token": self.table.n_h,
            "max_moved_points": self.max_moved,
            "group_order": len(self.elements),
        }
