"""Any DFA as a cascade of permutation-reset automata (Krohn-Rhodes, Thm 4) and that cascade as a stack of LRNNs.

Decomposition (ours; the two classical covering steps, applied recursively, exact and checked).
A semiautomaton X on states 0..n-1 with letter classes acting by maps f_c is decomposed as:
  * one level, if every f_c is a permutation or a constant map (a permutation-reset automaton);
  * else, if X has a non-trivial partition with the substitution property (each letter maps a block into a
    block: Hartmanis-Stearns), the cascade of the quotient X/pi (upper) and of "the position inside the
    block" (lower; its letters are the pairs (block before the letter, c)), each decomposed recursively.
    Among the minimal such partitions (closures of one merged pair) we take one with the smallest blocks;
  * else the cover step of the Krohn-Rhodes proof: the members are the images Q.c of the non-permutation
    letters and their orbits under the permutation letters (plus one set holding the start state). A
    permutation letter permutes the members, a non-permutation letter c sends every state into Q.c: so
    "which member holds the state" is a permutation-reset automaton (upper), and the position inside the
    member (< n positions) is the lower semiautomaton with letters (member before the letter, c).
Both steps shrink the state count of each part, so the recursion ends. Depth and width are whatever this gives
(reported, not bounded by the paper's n <= |Q| per layer). The result is verified exactly: a breadth-first
search over all reachable (cascade configuration, DFA state) pairs checks that the decoding returns the DFA
state on every one of them, hence after every word.

Cascade semantics (standard): level d moves by a map that depends on its letter class c_d, where c_0 is the
class of the symbol and c_{d+1} = next_class_d[s_d][c_d], with s_d the state of level d *before* the symbol
(the class at level d stands for the states of all levels above and the symbol, up to what the levels below
cannot tell apart).

LRNN (one layer per level; Thm 4's construction, App. C.5). A level with n states has a state H in R^K:
  * permutation class: A = the permutation matrix = a product of swap reflections, B = 0;
  * reset class to state q: A = 0 = prod_i (I - e_i e_i^T) and B = e_q, i.e. n delta-rule writes with
    k = e_i, beta = 1, v = [i = q].
Layer d reads its class c_d per token and decodes with g(x) = (1, ..., n)^T x. A layer's output is
dec(H_t, x_t), a function of the state *after* the token, while the level below needs the state before it.
After a permutation the decoder recovers it by undoing the permutation; after a reset the state is gone. So a
level whose resets lead to classes below that depend on its old state keeps a second block (K = 2n): on such a
reset it first swaps the two blocks (n swap reflections: the old state moves to block 2, a norm-1 map), then
writes e_q into block 1. Its decoder outputs c_{d+1} (the next layer's input) and its new state; the final
map W reads the new states of all layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from statetrack.tasks import permutations

from ._lrnn import FactorTable, run_layer, swap_key, unit_key
from .dfa import DFA

Map = tuple[int, ...]


def _is_perm(f: Map) -> bool:
    return len(set(f)) == len(f)


def _is_const(f: Map) -> bool:
    return len(set(f)) == 1


def _classes(maps: Sequence[Map]) -> tuple[list[Map], list[int]]:
    """Distinct maps, and the class of each input map."""
    index: dict[Map, int] = {}
    cls = [index.setdefault(f, len(index)) for f in maps]
    return list(index), cls


# ---- decomposition into a (lazy) cascade ---------------------------------------------------------------------


@dataclass
class _Sub:
    """A cascade covering a semiautomaton, with levels given lazily: ``acts[l](key)`` is the map of level l for
    key = (states of the levels above before the letter, ..., letter class)."""

    sizes: list[int]
    acts: list[Callable[[tuple], Map]]
    start: tuple[int, ...]
    decode: Callable[[tuple], int | None]


def _memo(fn):
    cache: dict = {}

    def wrapped(key):
        if key not in cache:
            cache[key] = fn(key)
        return cache[key]

    return wrapped


def _complete(g: list[int], m: int) -> Map:
    """Extend a map on the first len(g) of m points to all m, keeping it constant or injective if it is."""
    if len(set(g)) == 1:
        return tuple(g + [g[0]] * (m - len(g)))
    if len(set(g)) == len(g):
        used = set(g)
        return tuple(g + [x for x in range(m) if x not in used])
    return tuple(g + [g[0]] * (m - len(g)))  # these positions are never occupied: any value will do


def _images(n: int, maps: Sequence[Map]) -> set[frozenset[int]]:
    """All images Q.w, w non-empty."""
    seen: set[frozenset[int]] = set()
    frontier = [frozenset(range(n))]
    while frontier:
        s = frontier.pop()
        for f in maps:
            t = frozenset(f[x] for x in s)
            if t not in seen:
                seen.add(t)
                frontier.append(t)
    return seen


def _sp_partition(n: int, maps: Sequence[Map]) -> list[tuple[int, ...]] | None:
    """A non-trivial partition with the substitution property with the smallest largest block, or None."""
    best = None
    seen = set()
    for p in range(n):
        for q in range(p + 1, n):
            parent = list(range(n))

            def find(x, parent=parent):
                while parent[x] != x:
                    parent[x] = parent[parent[x]]
                    x = parent[x]
                return x

            todo = [(p, q)]
            while todo:
                a, b = todo.pop()
                ra, rb = find(a), find(b)
                if ra == rb:
                    continue
                parent[ra] = rb
                todo.extend((f[a], f[b]) for f in maps)
            groups_: dict[int, list[int]] = {}
            for x in range(n):
                groups_.setdefault(find(x), []).append(x)
            blocks = tuple(sorted(tuple(b) for b in groups_.values()))
            if len(blocks) == 1 or blocks in seen:
                continue
            seen.add(blocks)
            score = (max(len(b) for b in blocks), len(blocks))
            if best is None or score < best[0]:
                best = (score, blocks)
    return None if best is None else list(best[1])


def _lower(maps: Sequence[Map], member_of_state: Callable[[int, int], int], members: Sequence[tuple[int, ...]]):
    """The "position inside the member" semiautomaton: letters (member before the letter, class)."""
    m = max(len(s) for s in members)
    raw = {}
    for i, s in enumerate(members):
        for c, f in enumerate(maps):
            target = members[member_of_state(i, c)]
            raw[i, c] = _complete([target.index(f[x]) for x in s], m)
    keys = list(raw)
    lmaps, lcls = _classes([raw[k] for k in keys])
    return m, lmaps, dict(zip(keys, lcls, strict=True))


def _combine(upper: _Sub, lower: _Sub, upper_class: Callable[[int], int], lower_class, place) -> _Sub:
    """Stack ``lower`` below ``upper``: the lower letter class is lower_class[(upper decoded before, c)]."""
    k = len(upper.sizes)
    acts = [_memo(lambda key, f=f: f((*key[:-1], upper_class(key[-1])))) for f in upper.acts]
    identity_cache: dict[int, Map] = {}

    def lower_act(j):
        def act(key):
            u = upper.decode(key[:k])
            cls = lower_class.get((u, key[-1])) if u is not None else None
            if cls is None:  # a configuration that never occurs: any permutation-reset map will do
                n = lower.sizes[j]
                return identity_cache.setdefault(n, tuple(range(n)))
            return lower.acts[j]((*key[k:-1], cls))

        return _memo(act)

    acts += [lower_act(j) for j in range(len(lower.sizes))]

    def decode(cfg):
        u, p = upper.decode(cfg[:k]), lower.decode(cfg[k:])
        return place(u, p)

    return _Sub(upper.sizes + lower.sizes, acts, upper.start + lower.start, decode)


def _decompose(n: int, maps: list[Map], start: int) -> _Sub:
    """Cascade of the semiautomaton on 0..n-1 with (distinct) letter classes ``maps``, started in ``start``."""
    if n == 1:
        return _Sub([], [], (), lambda cfg: 0)
    if all(_is_perm(f) or _is_const(f) for f in maps):
        return _Sub([n], [lambda key: maps[key[-1]]], (start,), lambda cfg: cfg[0])

    blocks = _sp_partition(n, maps)
    if blocks is not None:  # quotient (upper) and position inside the block (lower)
        block_of = {x: b for b, blk in enumerate(blocks) for x in blk}
        umaps_all = [tuple(block_of[f[blk[0]]] for blk in blocks) for f in maps]
        umaps, ucls = _classes(umaps_all)
        upper = _decompose(len(blocks), umaps, block_of[start])
        m, lmaps, lcls = _lower(maps, lambda i, c: umaps_all[c][i], blocks)
        lower = _decompose(m, lmaps, blocks[block_of[start]].index(start))

        def place(u, p):
            return blocks[u][p] if u is not None and p is not None and p < len(blocks[u]) else None

        return _combine(upper, lower, lambda c: ucls[c], lcls, place)

    # cover step: members = the images of the non-permutation letters (or the maximal proper images that
    # contain them: fewer, larger members), closed under the permutation letters; keep the smaller cover
    perms = [f for f in maps if _is_perm(f)]
    options = []
    for maximal in (False, True):
        reset_to = {c: tuple(sorted(set(f))) for c, f in enumerate(maps) if not _is_perm(f)}
        if maximal:
            big = [s for s in _images(n, maps) if len(s) < n]
            big = sorted((s for s in big if not any(s < t for t in big)), key=lambda s: (-len(s), sorted(s)))
            reset_to = {c: tuple(sorted(next(t for t in big if set(r) <= t))) for c, r in reset_to.items()}
        start_set = next((r for r in reset_to.values() if start in r), (start,))
        members, frontier = [], []
        for r in [start_set, *reset_to.values()]:
            if r not in members:
                members.append(r)
                frontier.append(r)
        while frontier:
            r = frontier.pop()
            for f in perms:
                t = tuple(sorted(f[x] for x in r))
                if t not in members:
                    members.append(t)
                    frontier.append(t)
        options.append(((len(members), max(len(r) for r in members)), members, reset_to, start_set))
    _, members, reset_to, start_set = min(options, key=lambda o: o[0])
    index = {s: i for i, s in enumerate(members)}

    def member_after(i: int, c: int) -> int:
        f = maps[c]
        return index[tuple(sorted(f[x] for x in members[i]))] if _is_perm(f) else index[reset_to[c]]

    tmaps = [tuple(member_after(i, c) for i in range(len(members))) for c in range(len(maps))]
    top = _Sub([len(members)], [lambda key: tmaps[key[-1]]], (index[start_set],), lambda cfg: cfg[0])
    m, lmaps, lcls = _lower(maps, member_after, members)
    lower = _decompose(m, lmaps, start_set.index(start))

    def place(u, p):
        return members[u][p] if u is not None and p is not None and p < len(members[u]) else None

    return _combine(top, lower, lambda c: c, lcls, place)


# ---- the finite cascade ---------------------------------------------------------------------------------------


@dataclass
class Level:
    """One permutation-reset automaton of the cascade.

    Attributes:
        n: number of states.
        maps: per letter class c, the map of c on 0..n-1 (a permutation or a constant map).
        next_class: [n][len(maps)] -> the class of the level below, from this level's state before the symbol
            and its class (None for the last level).
    """

    n: int
    maps: list[Map]
    next_class: list[list[int]] | None = None

    @property
    def resets(self) -> bool:
        return any(not _is_perm(f) for f in self.maps)


@dataclass
class Cascade:
    """A cascade of permutation-reset automata covering a DFA (started in its start state).

    ``final`` is the map W from the new states of all levels to the DFA state, as a chain of tables:
    prefix id p_0 = s_0, p_{d+1} = final[d][p_d][s_{d+1}] (-1: never occurs), DFA state = final[-1][p_last]
    (a list). ``decode`` does the same on a configuration tuple.
    """

    dfa: DFA
    top_class: list[int]
    levels: list[Level]
    start: tuple[int, ...]
    final: list
    reachable: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def widths(self) -> list[int]:
        return [lv.n for lv in self.levels]

    def step(self, cfg: Sequence[int], a: int) -> tuple[int, ...]:
        """One symbol; each level reads the class built from the states above *before* the symbol."""
        c, new = self.top_class[a], []
        for d, lv in enumerate(self.levels):
            new.append(lv.maps[c][cfg[d]])
            if lv.next_class is not None:
                c = lv.next_class[cfg[d]][c]
        return tuple(new)

    def decode(self, cfg: Sequence[int]) -> int | None:
        if not self.levels:
            return self.dfa.start
        p = cfg[0]
        for d in range(1, self.depth):
            p = self.final[d - 1][p][cfg[d]]
            if p < 0:
                return None
        q = self.final[-1][p]
        return None if q < 0 else q

    def run(self, symbols: Sequence[int]) -> list[int | None]:
        """DFA states after each prefix, computed by the cascade (a plain-Python reference)."""
        cfg, out = self.start, []
        for a in symbols:
            cfg = self.step(cfg, a)
            out.append(self.decode(cfg))
        return out


def krohn_rhodes(dfa: DFA, *, minimize: bool = True) -> Cascade:
    """Decompose ``dfa`` (minimised first by default) into a cascade of permutation-reset automata.

    The cascade is verified on every reachable (configuration, DFA state) pair; AssertionError if it fails
    (it never should)."""
    notes = []
    if minimize:
        small = dfa.minimize()
        if small.n_states != dfa.n_states:
            notes.append(f"minimised the DFA from {dfa.n_states} to {small.n_states} states")
        dfa = small
    maps, sym_class = _classes(dfa.letter_maps())
    sub = _decompose(dfa.n_states, maps, dfa.start)
    D, S = len(sub.sizes), len(dfa.alphabet)

    def step(cfg):
        return [tuple(sub.acts[d]((*cfg[:d], sym_class[a]))[cfg[d]] for d in range(D)) for a in range(S)]

    # every reachable (configuration, DFA state) pair; the cascade must decode each to its DFA state
    seen = {(sub.start, dfa.start)}
    frontier = list(seen)
    configs = {sub.start}
    while frontier:
        cfg, q = frontier.pop()
        assert sub.decode(cfg) == q, f"the cascade decodes {cfg} to {sub.decode(cfg)}, the DFA is in {q}"
        for a, new in enumerate(step(cfg)):
            pair = (new, dfa.delta[q][a])
            configs.add(new)
            if pair not in seen:
                seen.add(pair)
                frontier.append(pair)

    levels, top_class = _chain(sub, sorted(configs), sym_class, S)
    for lv in levels:
        assert all(_is_perm(f) or _is_const(f) for f in lv.maps), "a level is not permutation-reset"
    final = _final_map(sub, sorted(configs))
    cascade = Cascade(dfa, top_class, levels, tuple(sub.start), final, reachable=len(seen), notes=notes)
    for cfg, q in seen:  # the finite tables reproduce the lazy cascade
        assert cascade.decode(cfg) == q
        assert all(cascade.step(cfg, a) == new for a, new in enumerate(step(cfg)))
    return cascade


def _chain(sub: _Sub, configs: list[tuple], sym_class: list[int], S: int) -> tuple[list[Level], list[int]]:
    """Finite class tables for the reachable configurations, with equivalent classes merged (bottom-up)."""
    D = len(sub.sizes)
    # keys[d]: the distinct (states of levels < d, symbol) that occur; class chain over them
    keys = [sorted({(*cfg[:d], a) for cfg in configs for a in range(S)}) for d in range(D)]
    kid = [{k: i for i, k in enumerate(ks)} for ks in keys]
    maps_of = [[sub.acts[d]((*k[:-1], sym_class[k[-1]])) for k in keys[d]] for d in range(D)]
    nxt = [
        [[kid[d + 1].get((*k[:-1], s, k[-1]), -1) for s in range(sub.sizes[d])] for k in keys[d]] for d in range(D - 1)
    ]
    # merge keys that act alike at this level and lead to equivalent classes below
    cls: list[list[int]] = [[] for _ in range(D)]
    for d in range(D - 1, -1, -1):
        sig_index: dict = {}
        for i in range(len(keys[d])):
            below = () if d == D - 1 else tuple(cls[d + 1][j] if j >= 0 else -1 for j in nxt[d][i])
            cls[d].append(sig_index.setdefault((maps_of[d][i], below), len(sig_index)))
    levels = []
    for d in range(D):
        n_cls = max(cls[d]) + 1
        cmaps: list = [None] * n_cls
        table = [[0] * n_cls for _ in range(sub.sizes[d])] if d < D - 1 else None
        for i, c in enumerate(cls[d]):
            cmaps[c] = maps_of[d][i]
            if table is not None:
                for s, j in enumerate(nxt[d][i]):
                    if j >= 0:
                        table[s][c] = cls[d + 1][j]
        levels.append(Level(sub.sizes[d], cmaps, table))
    top_class = [cls[0][kid[0][(a,)]] for a in range(S)] if D else [0] * S
    return levels, top_class


def _final_map(sub: _Sub, configs: list[tuple]) -> list:
    """The map W: new states of all levels -> DFA state, as a chain of prefix tables (see :class:`Cascade`)."""
    D = len(sub.sizes)
    if D == 0:
        return [[0]]
    pid = [{(s,): s for s in range(sub.sizes[0])}]
    tables = []
    for d in range(1, D):
        prefixes = sorted({cfg[: d + 1] for cfg in configs})
        ids = {p: i for i, p in enumerate(prefixes)}
        table = [[-1] * sub.sizes[d] for _ in range(len(pid[-1]))]
        for p in prefixes:
            table[pid[-1][p[:-1]]][p[-1]] = ids[p]
        tables.append(table)
        pid.append(ids)
    last = [-1] * len(pid[-1])
    for p, i in pid[-1].items():
        q = sub.decode(p)
        last[i] = -1 if q is None else q
    tables.append(last)
    return tables


# ---- the cascade as a stack of LRNN layers ------------------------------------------------------------------


def _needs_old_state(lv: Level) -> bool:
    """Does the class below depend on this level's state before a reset? (Then the layer keeps it.)"""
    if lv.next_class is None:
        return False
    return any(len({lv.next_class[s][c] for s in range(lv.n)}) > 1 for c, f in enumerate(lv.maps) if not _is_perm(f))


@dataclass
class _Layer:
    n: int
    two_blocks: bool
    table: FactorTable
    is_reset: torch.Tensor  # [L] bool
    inverse: torch.Tensor  # [L, n] long: the old state from the new one, for permutation classes
    next_class: torch.Tensor | None  # [n, L] long


class CascadeLRNN:
    """The cascade of :func:`krohn_rhodes` as ``depth`` hand-set DeltaProduct layers on :func:`delta_rule`.

    Layer d reads its letter class per token (computed by the decoder of layer d - 1), looks up its
    Householder factors, runs the recurrence, and decodes its state with g(x) = (1, ..., n)^T x (per block:
    two heads when it keeps a second block). The DFA state is the final map W of all layers' new states.
    """

    def __init__(self, cascade: Cascade, dtype: torch.dtype = torch.float32, backend: str = "naive"):
        self.cascade, self.dtype, self.backend = cascade, dtype, backend
        self.n_symbols = len(cascade.dfa.alphabet)
        self.top_class = torch.tensor(cascade.top_class, dtype=torch.long)
        self.layers: list[_Layer] = []
        for lv in cascade.levels:
            n, two = lv.n, _needs_old_state(lv)
            K = 2 * n if two else n
            factors, is_reset, inverse = [], [], []
            for f in lv.maps:
                if _is_perm(f):
                    factors.append([(swap_key(a, b, K), 2.0, 0.0) for a, b in permutations.transpositions(f)])
                    inverse.append(list(permutations.inverse(f)))
                else:
                    fs = [(swap_key(i, n + i, K), 2.0, 0.0) for i in range(n)] if two else []
                    fs += [(unit_key(i, K), 1.0, 1.0 if i == f[0] else 0.0) for i in range(n)]
                    factors.append(fs)
                    inverse.append([0] * n)
                is_reset.append(not _is_perm(f))
            nxt = torch.tensor(lv.next_class, dtype=torch.long) if lv.next_class is not None else None
            self.layers.append(
                _Layer(
                    n,
                    two,
                    FactorTable(factors, K),
                    torch.tensor(is_reset),
                    torch.tensor(inverse, dtype=torch.long),
                    nxt,
                )
            )
        self.final = [torch.tensor(t, dtype=torch.long) for t in cascade.final]
        dfa = cascade.dfa
        self.labels = torch.tensor([dfa.label(q) for q in range(dfa.n_states)], dtype=torch.long)

    def describe(self) -> dict:
        return {
            "dfa_states": self.cascade.dfa.n_states,
            "alphabet": self.n_symbols,
            "depth": self.cascade.depth,
            "level_states": self.cascade.widths,
            "layer_state_dims": [ly.table.dim for ly in self.layers],
            "householders_per_token": [ly.table.n_h for ly in self.layers],
            "width": max([ly.table.dim for ly in self.layers], default=0),
            "letter_classes": [len(lv.maps) for lv in self.cascade.levels],
            "reachable_pairs": self.cascade.reachable,
        }

    def states(self, symbols: torch.Tensor) -> torch.Tensor:
        """DFA state after each prefix, [B, T] long, computed by the layers alone; -1 where decoding fails."""
        if symbols.dim() != 2:
            raise ValueError(f"symbols must have shape [B, T], got {list(symbols.shape)}")
        symbols = symbols.long()
        if symbols.numel() and (int(symbols.min()) < 0 or int(symbols.max()) >= self.n_symbols):
            raise ValueError(f"symbols must lie in [0, {self.n_symbols})")
        B, T = symbols.shape
        if self.cascade.depth == 0:  # a one-state DFA
            return torch.full((B, T), self.cascade.dfa.start, dtype=torch.long)
        cls = self.top_class[symbols]
        new_states, bad = [], torch.zeros(B, T, dtype=torch.bool)
        for d, ly in enumerate(self.layers):
            n, K = ly.n, ly.table.dim
            g = torch.arange(1, n + 1, dtype=torch.float64)
            readout = torch.zeros(2 if ly.two_blocks else 1, K, dtype=torch.float64)
            readout[0, :n] = g
            if ly.two_blocks:
                readout[1, n:] = g
            h0 = torch.zeros(K, dtype=torch.float64)
            h0[self.cascade.start[d]] = 1.0
            o = run_layer(ly.table, cls, h0, readout, dtype=self.dtype, backend=self.backend)
            idx = o.round().long() - 1
            bad |= (idx[..., 0] < 0) | (idx[..., 0] >= n)
            new = idx[..., 0].clamp(0, n - 1)
            new_states.append(new)
            if ly.next_class is None:
                continue
            old = ly.inverse[cls, new]
            if ly.two_blocks:
                reset = ly.is_reset[cls]
                bad |= reset & ((idx[..., 1] < 0) | (idx[..., 1] >= n))
                old = torch.where(reset, idx[..., 1].clamp(0, n - 1), old)
            cls = ly.next_class[old, cls]
        # the final map W, a chain of table lookups over the new states
        p = new_states[0]
        for table, s in zip(self.final[:-1], new_states[1:], strict=True):
            p = table[p.clamp(min=0), s]
            bad |= p < 0
        q = self.final[-1][p.clamp(min=0)]
        bad |= q < 0
        return torch.where(bad, torch.full_like(q, -1), q)

    def outputs(self, symbols: torch.Tensor) -> torch.Tensor:
        """The DFA's label (acceptance 1 / 0, or its Moore output) after each prefix, [B, T]; -1 if undecodable."""
        st = self.states(symbols)
        return torch.where(st >= 0, self.labels[st.clamp(min=0)], torch.full_like(st, -1))

    def accepts(self, words: Sequence[Sequence[int]]) -> list[bool]:
        """Acceptance of each word (lists of symbol ids), from the LRNN alone. Words are padded to one length
        and each is read at its own last position; the empty word is read off the initial states."""
        if not words:
            return []
        T = max(1, max(len(w) for w in words))
        x = torch.zeros(len(words), T, dtype=torch.long)
        for i, w in enumerate(words):
            x[i, : len(w)] = torch.tensor(list(w), dtype=torch.long)
        st = self.states(x)
        start_state = self.cascade.decode(self.cascade.start)
        acc = self.cascade.dfa.accepting
        return [(int(st[i, len(w) - 1]) if w else start_state) in acc for i, w in enumerate(words)]
