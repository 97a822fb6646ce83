"""Seeded integers that are identical on every machine, and 64-bit hashes of token sequences.

Why not ``torch.randint`` or ``numpy.random.Generator.integers``: both libraries reserve the right to change how
they turn random bits into bounded integers between releases. The raw output of a counter-based bit generator
(Philox-4x64-10, Salmon et al. 2011) is fixed by its specification, so every task draws raw 64-bit words from
numpy's Philox and maps them to integers itself, with a modulo. The modulo bias is below high / 2**64, i.e. below
2**-48 for every alphabet in this package.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

_U64 = np.uint64


class StableRng:
    """A stream of random integers determined only by a 128-bit ``key`` (no library-version dependence)."""

    def __init__(self, key: int):
        if not isinstance(key, int) or not 0 <= key < 2**128:
            raise ValueError(f"key must be an int in [0, 2**128), got {key!r}")
        self.key = key
        self._bits = np.random.Philox(key=key)

    @classmethod
    def from_text(cls, text: str) -> StableRng:
        """A stream named by a string (e.g. a test set's identity): key = first 16 bytes of sha256(text)."""
        return cls(int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little"))

    @classmethod
    def from_torch(cls, generator: torch.Generator | int | None) -> StableRng:
        """Seed a stream from a torch generator (advancing it, so each call gets fresh data) or from an int.

        ``None`` uses torch's global default generator (``torch.manual_seed``).
        """
        if isinstance(generator, int | np.integer) and not isinstance(generator, bool):
            return cls.from_text(f"statetrack-seed|{int(generator)}")
        if generator is None:
            generator = torch.default_generator
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator)}")
        if generator.device.type != "cpu":
            raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
        hi, lo = torch.randint(0, 2**62, (2,), generator=generator, dtype=torch.int64).tolist()
        return cls((hi << 62) | lo)

    def raw(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """Raw uint64 words of the given shape (the next ones in the stream)."""
        return self._bits.random_raw(shape)

    def integers(self, high, shape: int | tuple[int, ...]) -> np.ndarray:
        """int64 array of ``shape``, entries uniform in [0, high); ``high`` an int or an array broadcasting to
        ``shape`` (per-entry bounds), every bound in [1, 2**32]."""
        high_arr = np.asarray(high, dtype=np.int64)
        if high_arr.size and (high_arr.min() < 1 or high_arr.max() > 2**32):
            raise ValueError(f"high must lie in [1, 2**32], got range [{high_arr.min()}, {high_arr.max()}]")
        return (self.raw(shape) % high_arr.astype(_U64)).astype(np.int64)


_HASH_STREAM_KEY = 0x5EED_C0DE_7E57_5E75
_hash_multipliers = np.zeros(0, dtype=_U64)


def _multipliers(n: int) -> np.ndarray:
    """n odd 64-bit multipliers, one per position, from a fixed stream (a prefix never changes as n grows)."""
    global _hash_multipliers
    # read the global once: another thread may swap in a different-size array (every version is a prefix of the
    # same stream, so any of them is right as long as it is long enough)
    arr = _hash_multipliers
    if arr.size < n:
        arr = StableRng(_HASH_STREAM_KEY).raw(max(n, 2 * arr.size, 1024)) | _U64(1)
        _hash_multipliers = arr
    return arr[:n]


def _splitmix64(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> _U64(30))
    z = z * _U64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> _U64(27))
    z = z * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def sequence_hashes(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit hash of each row's first ``lengths[b]`` tokens (the padding does not count).

    tokens: int array [B, T]; lengths: int array [B]; returns uint64 [B]. Equal sequences hash equal; two
    different ones collide with probability about 2**-63, and a collision only ever makes the data stricter
    (a training sample rejected, a test sequence dropped as a duplicate).
    """
    tokens = np.asarray(tokens)
    lengths = np.asarray(lengths, dtype=np.int64)
    B, T = tokens.shape
    valid = np.arange(T)[None, :] < lengths[:, None]
    x = np.where(valid, tokens.astype(np.int64) + 1, 0).astype(_U64)
    # uint64 arithmetic wraps modulo 2**64, which is what a multiplicative hash wants
    h = (x * _multipliers(T)[None, :]).sum(axis=1, dtype=_U64)
    h = h ^ (lengths.astype(_U64) * _U64(0x9E3779B97F4A7C15))
    return _splitmix64(h)


_GAMMA = _U64(0x9E3779B97F4A7C15)  # SplitMix64's increment


def text_key64(text: str) -> int:
    """A 64-bit key named by a string (first 8 bytes of its sha256)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


class RowRng:
    """Per-row random streams for a fixed, indexed set of sequences: row r of every draw reads the stream of
    sequence ``indices[r]`` (attempt ``attempt``), so a sequence's tokens depend on its index alone, not on the
    batch it is drawn in, as long as every row of the batch has the same length (same draw shapes).

    Stream of sequence i: SplitMix64 words seeded by mix(key ^ mix(i) + attempt), read in order across draws.
    Serves :meth:`raw` and :meth:`integers` like :class:`StableRng` (the first axis of every shape = rows).
    """

    def __init__(self, key: int, indices: np.ndarray, attempt: int = 0):
        idx = np.asarray(indices, dtype=np.int64).astype(_U64)
        self._base = _splitmix64(_splitmix64(_U64(key) ^ _splitmix64(idx)) + _U64(attempt))
        self._offset = 0

    def raw(self, shape: int | tuple[int, ...]) -> np.ndarray:
        shape = (shape,) if isinstance(shape, int | np.integer) else tuple(shape)
        if shape[0] != self._base.size:
            raise ValueError(f"RowRng draws need {self._base.size} rows first, got shape {shape}")
        n = int(np.prod(shape[1:], dtype=np.int64))
        j = np.arange(self._offset + 1, self._offset + n + 1, dtype=np.int64).astype(_U64)
        self._offset += n
        return _splitmix64(self._base[:, None] + j[None, :] * _GAMMA).reshape(shape)

    def integers(self, high, shape: int | tuple[int, ...]) -> np.ndarray:
        high_arr = np.asarray(high, dtype=np.int64)
        if high_arr.size and (high_arr.min() < 1 or high_arr.max() > 2**32):
            raise ValueError(f"high must lie in [1, 2**32], got range [{high_arr.min()}, {high_arr.max()}]")
        return (self.raw(shape) % high_arr.astype(_U64)).astype(np.int64)


def permutation(key: int, n: int) -> np.ndarray:
    """A permutation of range(n) named by ``key`` (argsort of n SplitMix64 words): int64 [n]."""
    words = _splitmix64(_U64(key) + np.arange(1, n + 1, dtype=np.int64).astype(_U64) * _GAMMA)
    return np.argsort(words, kind="stable").astype(np.int64)
