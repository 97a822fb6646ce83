"""Group word problems: inputs are group elements, the label at every position is the running product.

Format: ``input = <bos> x_1 ... x_L`` and ``target = <pad> y_1 ... y_L`` with y_t = x_1 then x_2 ... then x_t
(for permutations y_t(i) = x_t(...x_1(i)...); see :mod:`statetrack.tasks.groups`); ``mask`` is False at
``<bos>`` and on padding. Element ids are shared by inputs and targets (id 0 = identity). So position t
holds the t-th token and its state, and prefix accuracy "up to length l" reads positions 1..l.

k tokens per transition (``num_tokens_per_transition = k > 1``, the paper's "S5, 4 tokens"): every k-th
token is an element, the k - 1 tokens after it are the filler token (id = |G|, acting as the identity), so a
length-L input holds ceil(L / k) elements. Labels are shifted right by k - 1 (identity in the first k - 1
positions), so the state after element i sits on the last token of its block. ``filler_target`` sets the
labels at the other positions of a block:

- "state" (default; the paper's reading: the filler acts as the identity, y_{i+3} is the product up to x_i, so
  every position is labelled with the state after the last completed block, a group element everywhere);
- "filler" (the follow-up code's ``s_token`` path, automl/DeltaProduct): the filler token;
- "none": no label there (mask False); only block ends count.

Glossary of shape letters: B batch, L tokens per row (``<bos>`` excluded), E = ceil(L / k) elements, G order.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import numpy as np

from .base import Task
from .groups import Group, get_group, prefix_products

FILLER_TARGETS = ("filler", "state", "none")


def _element_str(e) -> str:
    return json.dumps(e, separators=(",", ":"))


class WordProblem(Task):
    """Word problem of a finite group (``group``), inputs restricted to ``generators``."""

    family = "word-problem"
    kind = "group"
    length_unit: ClassVar[str] = "input tokens (elements and fillers), <bos> not counted"
    summary = "group elements in; label at every position = running product (state after x_1 .. x_t)"
    defaults: ClassVar[dict[str, Any]] = {
        "group": "S5",
        "generators": "all",
        "num_tokens_per_transition": 1,
        "filler_target": "state",
        "bos": True,
        "train_lengths": (32, 32),
        "test_lengths": (500, 500),
        "test_size": 40000,
        "test_size_small": 1024,
    }

    def _check_params(self, p):
        self.group: Group = get_group(p["group"])
        p["group"] = self.group.name
        self.generator_ids = self.group.allowed_inputs(p["generators"])
        p["generators"] = str(p["generators"]).strip().lower().replace(" ", "")
        k = p["num_tokens_per_transition"]
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"num_tokens_per_transition must be an int >= 1, got {k!r}")
        p["num_tokens_per_transition"] = int(k)
        if p["filler_target"] not in FILLER_TARGETS:
            raise ValueError(f"filler_target must be one of {list(FILLER_TARGETS)}, got {p['filler_target']!r}")
        if int(k) == 1:
            p["filler_target"] = "state"  # no fillers: every variant is the same task, keep one identity
        return p

    def _generation_key(self):
        key = super()._generation_key()
        if self.k == 1:  # no fillers, nothing to label: keep the name v1 gave these streams (same test sets)
            key["filler_target"] = "filler"
        return key

    @property
    def k(self) -> int:
        return self.params["num_tokens_per_transition"]

    @property
    def filler_id(self) -> int | None:
        return self.group.order if self.k > 1 else None

    def _build_symbols(self):
        symbols = [_element_str(e) for e in self.group.elements]
        return symbols + (["<filler>"] if self.k > 1 else [])

    @property
    def min_length(self) -> int:
        return 1

    def positions(self, length: int) -> int:
        return length + int(self.params["bos"])

    @property
    def chance(self) -> float:
        return 1.0 / self.group.order

    @property
    def label_ids(self) -> list[int]:
        ids = list(range(self.group.order))
        if self.k > 1 and self.params["filler_target"] == "filler":
            ids.append(self.filler_id)
        return ids

    @property
    def input_ids(self) -> list[int]:
        return [int(i) for i in self.generator_ids] + ([self.filler_id] if self.k > 1 else [])

    @property
    def elements(self) -> dict[int, Any]:
        """{id: element}: permutations as one-line lists, residues as ints, product elements as lists."""
        return dict(enumerate(self.group.elements))

    def _generate(self, rng, lengths):
        B, bos, k = lengths.shape[0], int(self.params["bos"]), self.k
        N = int(lengths.max())
        E = -(-N // k)
        gens = self.generator_ids
        x = gens[rng.integers(gens.size, (B, E))]
        y = prefix_products(self.group.table, x)  # y[:, e] = state after elements 0..e
        j = np.arange(N)
        inp = x[:, j // k] if k == 1 else np.where(j % k == 0, x[:, j // k], self.filler_id)
        if k == 1:
            lab = y
            has_label = np.ones(N, dtype=bool)
        else:
            # shift by k - 1: position j shows the state after the last element whose block ends by j
            done = j - (k - 1)
            state = np.where(done >= 0, y[:, np.maximum(done, 0) // k], 0)
            block_end = (done >= 0) & (done % k == 0)
            mode = self.params["filler_target"]
            if mode == "filler":
                lab = np.where(block_end | (done < 0), state, self.filler_id)
                has_label = np.ones(N, dtype=bool)
            elif mode == "state":
                lab, has_label = state, np.ones(N, dtype=bool)
            else:
                lab, has_label = state, block_end
        T = N + bos
        valid = j[None, :] < lengths[:, None]
        out_inp = np.full((B, T), self.pad_id, dtype=np.int64)
        out_tgt = np.full((B, T), self.pad_id, dtype=np.int64)
        out_msk = np.zeros((B, T), dtype=bool)
        if bos:
            out_inp[:, 0] = self.bos_id
        out_inp[:, bos:] = np.where(valid, inp, self.pad_id)
        keep = valid & has_label[None, :]
        out_tgt[:, bos:] = np.where(keep, lab, self.pad_id)
        out_msk[:, bos:] = keep
        return out_inp, out_tgt, out_msk

    def _describe_extra(self):
        return {
            "group": self.group.name,
            "group_order": self.group.order,
            "elements": {str(i): e for i, e in self.elements.items()},
            "generator_ids": [int(i) for i in self.generator_ids],
            "num_generators": int(self.generator_ids.size),
            "filler_id": self.filler_id,
            "convention": (
                "element ids are shared by inputs and targets (0 = identity); permutations in one-line "
                "notation p (p[i] is the image of i); the label at position t is the state after applying "
                "x_1 first, then x_2, ..., then x_t: y_t(i) = x_t(...x_1(i)...), residues add mod m"
                + (
                    f"; {self.k} tokens per transition: an element every {self.k}th token, then the filler "
                    f"(id {self.filler_id}); labels shifted right by {self.k - 1} (identity before the first "
                    f"block ends), other block positions labelled by filler_target="
                    f"{self.params['filler_target']!r}"
                    if self.k > 1
                    else ""
                )
            ),
        }
