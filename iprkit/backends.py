"""Generation backends: the seam between the rollout engine and a model runtime.

A backend turns chat conversations into assistant turns. :class:`HFBackend` runs a
``transformers`` model in-process, one batched forward per token for all sequences:

- each episode keeps its KV cache across env steps (the engine names episodes with
  ``keys``): a step prefills only the tokens that are new since the last turn (the
  observation), never the whole history again;
- identical greedy prompts are generated once; identical sampled prompts (N rollouts
  from one state) are prefilled once and their KV cache repeated.

Sampling is seeded per sequence, not per batch: each conversation comes with its own seed
(the engine derives it from the episode and the turn), and its tokens are drawn with
Gumbel noise from a counter-based hash of (seed, token position, vocabulary index). A
sequence's sample is the same whatever else shares its batch, so results do not depend
on batch size, chunking, or how many workers split a stage (see :func:`gumbel_noise`).

:class:`iprkit.server.OpenAIBackend` implements the same seam over an OpenAI-compatible
server (vLLM, ``transformers serve``); its prefix caching does the job of ``keys``.
"""

from typing import Protocol

import torch

from iprkit.kvcache import PackedLayer, packed_cache, prefill_groups
from iprkit.prompts import fit_context
from iprkit.settings import GenerationSettings


class Backend(Protocol):
    def generate(self, conversations: list[list[dict]], temperature: float, seed: int | list[int],
                 keys: list | None = None) -> list[str]:
        """One assistant turn per conversation; ``seed``: one per conversation (or one for all, from which
        each row's is derived); ``keys`` name the episodes (a backend may keep per-episode state, such as a
        KV cache, under them until :meth:`forget`)."""

    def forget(self, keys: list) -> None:
        """Drop whatever is kept for these episodes."""


def sliding_window(config) -> int | None:
    """The attention window of a model whose layers (some or all) attend to a sliding window, else None."""
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if not window or (types is not None and "sliding_attention" not in types):
        return None
    return int(window)


MASK64 = (1 << 64) - 1
_MUL1, _MUL2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # splitmix64's finaliser


def _signed(x: int) -> int:
    return x - (1 << 64) if x >= 1 << 63 else x


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch shifts arithmetically: mask the copied sign bits)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix64(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps modulo 2^64, as in C); ``out=x`` works in
    place (a decode step draws noise for every row and vocabulary entry: fresh tensors cost more than the math)."""
    x = x.clone() if out is None else out
    t = torch.empty_like(x)
    for s, mul in ((30, _MUL1), (27, _MUL2), (31, None)):
        torch.bitwise_right_shift(x, s, out=t)
        t.bitwise_and_((1 << (64 - s)) - 1)  # a logical shift: mask the copied sign bits
        x.bitwise_xor_(t)
        if mul is not None:
            x.mul_(_signed(mul))
    return x


def mix64_int(x: int) -> int:
    """:func:`mix64` on one Python int (the reference the tensor version is tested against)."""
    x &= MASK64
    x ^= x >> 30
    x = (x * _MUL1) & MASK64
    x ^= x >> 27
    x = (x * _MUL2) & MASK64
    return x ^ (x >> 31)


def seed_of(*parts) -> int:
    """A 62-bit seed from any hashable parts (stable across processes, unlike ``hash``)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") >> 2


def gumbel_noise(seeds: torch.Tensor, position: torch.Tensor, vocab: int) -> torch.Tensor:
    """Standard Gumbel noise [rows, vocab], a pure function of each row's (seed, position): counter-based,
    so a row's draws never depend on the other rows of the batch. ``argmax(logits / T + noise)`` samples
    from ``softmax(logits / T)`` (the Gumbel-max trick)."""
    x = torch.arange(vocab, dtype=torch.long, device=seeds.device)[None] + (
        seeds[:, None] * _signed(0x9E3779B97F4A7C15) + mix64(position[:, None] + 0x632BE59BD9B4E019))
    mix64(mix64(x, out=x), out=x)
    u = _shr(x, 11).double().add_(0.5).div_(float(1 << 53))  # uniform in (0, 1)
    return u.log_().neg_().log_().neg_()


def row_seeds(seed: int | list[int], n: int) -> list[int]:
    """One seed per row: the given list, or one derived per row from a single seed."""
    if isinstance(seed, int):
        return [seed_of(seed, i) for i in range(n)]
    if len(seed) != n:
        raise ValueError(f"generate: {len(seed)} seeds for {n} conversations.")
    return [int(s) for s in seed]


class Prompter:
    """Chat conversations -> prompt token ids under a context budget, the same for every backend."""

    def __init__(self, tokenizer, budget: int, stats: dict):
        self.tok, self.budget, self.stats = tokenizer, budget, stats

    def ids(self, conv: list[dict]) -> list[int]:
        return list(self.tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])

    def encode(self, conv: list[dict], ids: list[int] | None = None) -> list[int]:
        """Token ids of the prompt, after the context budget (see :func:`fit_context`); ``ids``: the whole
        conversation's, where already known."""
        ids = self.ids(conv) if ids is None else ids
        if len(ids) <= self.budget:  # the common case: tokenize once
            return ids
        conv, dropped = fit_context(conv, lambda m: len(self.ids(m)), self.budget)
        self.stats["context_drops"] += bool(dropped)
        return self.ids(conv)[-self.budget:]

    def encode_many(self, convs: list[list[dict]]) -> list[tuple[int, ...]]:
        """:meth:`encode` of each conversation: equal ones once (N rollouts from one state share theirs), the
        rest in one batched call of the tokenizer (its threads tokenize them side by side)."""
        keys = [tuple((m["role"], m["content"]) for m in c) for c in convs]
        todo = {k: c for k, c in zip(keys, convs)}
        got = self.tok.apply_chat_template(list(todo.values()), add_generation_prompt=True, tokenize=True,
                                           return_dict=True)["input_ids"]
        done = {k: tuple(self.encode(c, list(ids))) for (k, c), ids in zip(todo.items(), got)}
        return [done[k] for k in keys]


def context_budget(cfg: GenerationSettings, window: int) -> int:
    """Prompt tokens allowed: ``max_context``, else the model's window less the new tokens."""
    return cfg.max_context or max(64, window - cfg.max_new_tokens)


class HFBackend:
    """A transformers causal LM behind the :class:`Backend` seam."""

    def __init__(self, model, tokenizer, cfg: GenerationSettings | None = None):
        self.model, self.tok, self.cfg = model.eval(), tokenizer, cfg or GenerationSettings()
        self.budget = context_budget(self.cfg, getattr(model.config, "max_position_embeddings", 2048))
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        self.eos = sorted(e for e in eos if e is not None)
        self._kv: dict = {}  # episode key -> (token ids, [(keys, values) per layer], each [heads, len, dim])
        self.window = sliding_window(model.config)
        self.stats = {"calls": 0, "sequences": 0, "prefilled": 0, "prefill_tokens": 0, "reused_tokens": 0,
                      "new_tokens": 0, "context_drops": 0, "compactions": 0}
        self.prompter = Prompter(tokenizer, self.budget, self.stats)
        self.encode = self.prompter.encode

    def forget(self, keys) -> None:
        for k in keys:
            self._kv.pop(k, None)

    def _reusable(self, prompt: tuple, keys: list) -> tuple[int, list | None]:
        """The longest cached prefix of ``prompt`` among these episodes' caches (at most all but
        its last token, which must be fed to get the next token's logits)."""
        best, layers = 0, None
        for k in keys:
            entry = self._kv.get(k)
            if entry is None:
                continue
            old, kv = entry
            n = min(len(old), len(prompt) - 1)
            i = next((j for j in range(n) if old[j] != prompt[j]), n)
            if i > best:
                best, layers = i, kv
        return best, layers

    def _prefill(self, prompts: list[tuple], reuse: list[tuple[int, list | None]], extra: int, static: bool = False):
        """One forward over these rows' uncached tokens, their kept caches right-aligned at column C
        (the most any row reuses) and their new tokens left-padded into columns [C, C+N). Returns the
        last token's logits, the cache (``extra`` free columns after C+N; transformers' ``StaticCache``
        with ``static``, else :class:`PackedLayer` buffers) and its mask."""
        cached = [c for c, _ in reuse]
        new = [p[c:] for p, c in zip(prompts, cached)]
        C, N, B = max(cached), max(map(len, new)), len(prompts)
        T = C + N + extra
        dev = self.model.device
        if static:
            from transformers import StaticCache

            cache = StaticCache(config=self.model.config, max_cache_len=T)
        elif C:  # rows' kept caches, right-aligned so every row's new tokens start at column C
            layers = []
            for li, (k0, _) in enumerate(next(kv for _, kv in reuse if kv is not None)):
                ks = k0.new_empty(B, k0.shape[0], T, k0.shape[2])  # columns past C+N are never read
                vs = torch.empty_like(ks)
                for r, (c, kv) in enumerate(reuse):
                    ks[r, :, :C - c] = 0  # padding: masked, but must be finite (0 x NaN is NaN)
                    vs[r, :, :C - c] = 0
                    if c:
                        ks[r, :, C - c:C] = kv[li][0][:, :c]
                        vs[r, :, C - c:C] = kv[li][1][:, :c]
                layers.append(PackedLayer.of(ks, vs, C))
            cache = packed_cache(layers)
        else:
            cache = packed_cache([PackedLayer(T) for _ in range(self.model.config.num_hidden_layers)])
        ids = torch.full((B, N), self.tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros(B, T, dtype=torch.long)
        pos = torch.zeros(B, N, dtype=torch.long)
        for r, (c, n) in enumerate(zip(cached, new)):
            ids[r, N - len(n):] = torch.tensor(n)
            mask[r, C - c:C] = 1
            mask[r, C + N - len(n):C + N] = 1
            pos[r, N - len(n):] = torch.arange(c, c + len(n))
        out = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                         past_key_values=cache, use_cache=True)
        self.stats["prefilled"] += B
        self.stats["prefill_tokens"] += sum(map(len, new))
        self.stats["reused_tokens"] += sum(cached)
        return out.logits[:, -1].float(), cache, mask

    def _pack(self, prompts: list[tuple], reuse: list[tuple[int, list | None]], groups: list[list[int]]):
        """Prefill each group apart, then copy every row's tokens right-aligned at column L (the longest
        prompt) into one decode cache with ``max_new_tokens`` free columns after."""
        B0, L, extra = len(prompts), max(map(len, prompts)), self.cfg.max_new_tokens
        logits, bufs = None, []
        for g in groups:
            g_logits, g_cache, g_mask = self._prefill([prompts[r] for r in g], [reuse[r] for r in g], 0)
            if logits is None:
                logits = g_logits.new_zeros(B0, g_logits.shape[-1])
                bufs = [(layer.keys.new_empty(B0, layer.keys.shape[1], L + extra, layer.keys.shape[3]),
                         layer.values.new_empty(B0, layer.values.shape[1], L + extra, layer.values.shape[3]))
                        for layer in g_cache.layers]
            logits[torch.tensor(g)] = g_logits
            C = max(reuse[r][0] for r in g)
            W = g_mask.shape[1]  # C + N: the group's cached run ends at C, its new tokens at W
            for (k, v), layer in zip(bufs, g_cache.layers):
                for j, r in enumerate(g):  # a row is two runs of columns: copies of slices (a gather costs 5x)
                    c, n = reuse[r][0], len(prompts[r]) - reuse[r][0]
                    for dst, src in ((k, layer.keys), (v, layer.values)):
                        dst[r, :, :L - c - n] = 0  # padding: masked, but must be finite (0 x NaN is NaN)
                        dst[r, :, L - c - n:L - n] = src[j, :, C - c:C]
                        dst[r, :, L - n:L] = src[j, :, W - n:W]
        mask = torch.zeros(B0, L + extra, dtype=torch.long)
        for r, p in enumerate(prompts):
            mask[r, L - len(p):L] = 1
        return logits, packed_cache([PackedLayer.of(k, v, L) for k, v in bufs]), mask

    @torch.no_grad()
    def _run(self, prompts: list[tuple], repeats: list[int], reuse: list[tuple[int, list | None]],
             temperature: float, seeds: list[int]) -> tuple[list[list[int]], list[tuple]]:
        """Prefill each unique prompt's uncached tokens once (in groups of like shape, see :mod:`iprkit.kvcache`),
        repeat the cache ``repeats`` times, then decode all sequences together. Returns the new token ids and
        each sequence's (token ids, KV) for the next turn."""
        dev = self.model.device
        B0, L, extra = len(prompts), max(map(len, prompts)), self.cfg.max_new_tokens
        if self.window is not None and L + extra > self.window:
            # past a sliding window, kept caches would leave padding between a row's tokens, and the window counts
            # cache columns: encode whole prompts (left-padded, so each row's tokens stay contiguous), keep nothing,
            # and let transformers' StaticCache keep each sliding layer's window
            reuse, keep_cache = [(0, None)] * B0, False
            logits, cache, mask = self._prefill(prompts, reuse, extra, static=True)
        else:
            keep_cache = self.cfg.keep_cache
            cached, new = [c for c, _ in reuse], [len(p) - c for p, (c, _) in zip(prompts, reuse)]
            groups = prefill_groups(cached, new)
            if len(groups) == 1 and max(cached) + max(new) == L:  # one forward, already packed: decode in place
                logits, cache, mask = self._prefill(prompts, reuse, extra)
            else:
                logits, cache, mask = self._pack(prompts, reuse, groups)
        index = torch.repeat_interleave(torch.arange(B0), torch.tensor(repeats))
        last = torch.tensor([len(p) - 1 for p in prompts])
        if len(index) > B0:
            cache.reorder_cache(index.to(dev))
            logits, mask, last = logits[index.to(dev)], mask[index], last[index]
        B = len(index)
        gen: list[list[int]] = [[] for _ in range(B)]
        fed: list[list[int]] = [[] for _ in range(B)]
        live = torch.ones(B, dtype=torch.bool)
        eos = torch.tensor(self.eos)
        rows = torch.arange(B)  # the batch's rows, as sequence numbers: finished sequences leave the batch
        seq_seeds = torch.tensor(seeds, dtype=torch.long)  # one per sequence (after repeats)
        keep: list = [None] * B if keep_cache else []

        def release(drop: torch.Tensor) -> None:
            """Keep the KV of the batch rows ``drop`` (a bool mask) for their episodes' next turns."""
            if keep_cache:
                n = int(cache.get_seq_length())
                for j in drop.nonzero().flatten().tolist():
                    r, cols = int(rows[j]), mask[j, :n].bool().nonzero().flatten()
                    a, b = int(cols[0]), int(cols[-1]) + 1
                    # packed rows are one run of columns: keep a view (the buffer lives until the episode's next turn)
                    at = slice(a, b) if b - a == len(cols) else cols.to(dev)
                    keep[r] = (tuple(prompts[index[r]]) + tuple(fed[r]),
                               [(layer.keys[j][:, at], layer.values[j][:, at]) for layer in cache.layers])

        for t in range(self.cfg.max_new_tokens):
            nxt = self._pick(logits, temperature, seq_seeds[rows], torch.full((len(rows),), t)).cpu()
            feed = live[rows]  # the rows still writing; one that writes its end token now feeds it once more (KV kept)
            ids_now, seqs = nxt.tolist(), rows.tolist()
            for j in feed.nonzero().flatten().tolist():
                gen[seqs[j]].append(ids_now[j])
            if t == self.cfg.max_new_tokens - 1:
                break
            live[rows] &= ~torch.isin(nxt, eos)
            if not live.any():
                break
            if self.cfg.compact and 2 * int(feed.sum()) <= len(rows):  # at most half the rows still decode: drop the rest
                release(~feed)
                sel = feed.nonzero().flatten()
                cache.reorder_cache(sel.to(dev))
                self.stats["compactions"] += 1
                rows, mask, last, nxt, feed = rows[sel], mask[sel], last[sel], nxt[sel], feed[sel]
                ids_now, seqs = nxt.tolist(), rows.tolist()
            for j in feed.nonzero().flatten().tolist():
                fed[seqs[j]].append(ids_now[j])
            last = last + feed.long()
            mask[:, L + t] = feed.long()
            step_ids = torch.where(feed, nxt, self.tok.pad_token_id)[:, None]
            out = self.model(input_ids=step_ids.to(dev), attention_mask=mask.to(dev), position_ids=last[:, None].to(dev),
                             past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1].float()
        release(torch.ones(len(rows), dtype=torch.bool))
        self.stats["calls"] += 1
        self.stats["sequences"] += B
        result = []
        for row in gen:
            cut = next((i for i, t in enumerate(row) if t in self.eos), len(row))
            self.stats["new_tokens"] += min(cut + 1, len(row))
            result.append(row[:cut])
        return result, keep

    def _pick(self, logits: torch.Tensor, temperature: float, seeds: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """Greedy, or a sample of each row from its own counter-based noise (:func:`gumbel_noise`)."""
        if temperature <= 0:
            return logits.argmax(-1)
        scaled = (logits / temperature).double()
        if self.cfg.top_p < 1.0:
            sp, si = torch.softmax(scaled, -1).sort(-1, descending=True)
            drop = sp.cumsum(-1) - sp > self.cfg.top_p  # keep the smallest set whose mass reaches top_p
            scaled = scaled.scatter(-1, si, scaled.gather(-1, si).masked_fill(drop, float("-inf")))
        noise = gumbel_noise(seeds.to(scaled.device), position.to(scaled.device), scaled.shape[-1])
        return (scaled + noise).argmax(-1)

    def generate(self, conversations: list[list[dict]], temperature: float = 0.0, seed: int | list[int] = 0,
                 keys: list | None = None) -> list[str]:
        """One assistant turn per conversation, batched; each conversation's sample is a function of its own
        seed (``seed``: one per conversation, or one for all). With ``keys`` (one per conversation, naming
        its episode), each episode's KV cache is kept for its next turn until :meth:`forget`."""
        if keys is not None and len(keys) != len(conversations):
            raise ValueError(f"generate: {len(keys)} keys for {len(conversations)} conversations.")
        seeds = row_seeds(seed, len(conversations))
        encoded = self.prompter.encode_many(conversations)
        order: dict[tuple, list[int]] = {}
        for i, e in enumerate(encoded):
            order.setdefault(e, []).append(i)
        texts: list[str | None] = [None] * len(conversations)
        groups = list(order.items())
        if temperature > 0 and not self.cfg.share_prefix:  # encode every copy apart
            groups = [(p, [i]) for p, idx in groups for i in idx]
        per_group = [1 if temperature <= 0 else len(idx) for _, idx in groups]  # greedy: one per distinct prompt
        start = 0
        while start < len(groups):  # chunks of at most batch_size sequences
            end, total = start, 0
            while end < len(groups) and (total == 0 or total + per_group[end] <= self.cfg.batch_size):
                total += per_group[end]
                end += 1
            chunk = groups[start:end]
            reuse = [self._reusable(p, [keys[i] for i in idx]) if keys is not None and self.cfg.keep_cache
                     else (0, None) for p, idx in chunk]
            outs, kept = self._run([p for p, _ in chunk], per_group[start:end], reuse, temperature,
                                   [seeds[i] for (_, idx), n in zip(chunk, per_group[start:end]) for i in idx[:n]])
            k = 0
            for (_, idx), n in zip(chunk, per_group[start:end]):
                for j, i in enumerate(idx):
                    r = k + (j if n > 1 else 0)
                    texts[i] = self.tok.decode(outs[r], skip_special_tokens=True)
                    if keys is not None and kept:
                        self._kv[keys[i]] = kept[r]
                k += n
            start = end
        return texts
