"""The KV cache layout of a batched turn: which rows prefill together, and one buffer per layer for the decode.

A turn's rows differ in how much of their prompt a kept cache covers (``cached``) and how many tokens are new:
most go on from their last turn (a few dozen new tokens), some start over after a context drop (hundreds). One
prefill forward pads every row to the most cached and the most new tokens of the batch, so:

- :func:`prefill_groups` splits the rows into prefill forwards of similar shape;
- each row's tokens are then packed right-aligned at column ``L`` (its longest prompt), so every decode step reads
  ``L + t`` columns, not the ``C + N + t`` that one shared prefill layout would leave;
- :class:`PackedLayer` keeps a layer's KV in one preallocated buffer and hands attention only the columns written
  so far (transformers' ``StaticLayer`` hands it the whole buffer, unwritten columns included).
"""

import torch
from transformers.cache_utils import Cache, CacheLayerMixin


def prefill_groups(cached: list[int], new: list[int], per_forward: float = 256.0) -> list[list[int]]:
    """Rows split into prefill forwards (lists of row indices). Groups are runs of the rows sorted by new tokens,
    chosen by dynamic programming to minimise the padded token slots, each weighted by the columns it attends to
    (``1 + (C + N) / 1024``: attention's share of a token's work on a small model), plus ``per_forward`` slots a
    forward (its fixed cost; 256 measured best on the demo's rollouts, against 64 and 1,024)."""
    order = sorted(range(len(new)), key=lambda r: new[r])
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        C, N = 0, new[order[j - 1]]  # the group order[i-1:j]: its most new tokens are its last row's
        for i in range(j, 0, -1):
            C = max(C, cached[order[i - 1]])
            cost = best[i - 1] + per_forward + (j - i + 1) * N * (1 + (C + N) / 1024)
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    groups, j = [], len(order)
    while j:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


class PackedLayer(CacheLayerMixin):
    """One layer's KV in a buffer [rows, heads, capacity, dim], written at a cursor; attention reads the written
    columns only (``keys``/``values`` are views of them). Built from buffers whose first ``length`` columns are
    already filled (:meth:`of`), or empty, allocating ``capacity`` columns at the first write."""

    is_sliding = False

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.n, self.buf = capacity, 0, None

    @classmethod
    def of(cls, keys: torch.Tensor, values: torch.Tensor, length: int) -> "PackedLayer":
        layer = cls(keys.shape[2])
        layer.lazy_initialization(keys, values)
        layer.buf, layer.n = (keys, values), length
        layer._view()
        return layer

    def _view(self) -> None:
        self.keys, self.values = self.buf[0][:, :, :self.n], self.buf[1][:, :, :self.n]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
        if self.buf is None:
            b, h, _, d = key_states.shape
            self.buf = (key_states.new_empty(b, h, self.capacity, d), value_states.new_empty(b, h, self.capacity, d))

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        m = self.n + key_states.shape[2]
        if m > self.capacity:
            raise RuntimeError(f"PackedLayer: {m} columns written into a buffer of {self.capacity}.")
        self.buf[0][:, :, self.n:m] = key_states
        self.buf[1][:, :, self.n:m] = value_states
        self.n = m
        self._view()
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.n + query_length, 0

    def get_seq_length(self) -> int:
        return self.n

    def get_max_length(self) -> int:
        return self.capacity

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep (or repeat) the rows ``beam_idx``."""
        if self.buf is not None:
            self.buf = tuple(b.index_select(0, beam_idx.to(b.device)) for b in self.buf)
            self._view()


def packed_cache(layers: list[PackedLayer]) -> Cache:
    return Cache(layers=layers)
