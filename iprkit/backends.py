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


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (multiplication wraps modulo 2^64, as in C)."""
    x = x ^ _shr(x, 30)
    x = x * _signed(_MUL1)
    x = x ^ _shr(x, 27)
    x = x * _signed(_MUL2)
    return x ^ _shr(x, 31)


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
    x = mix64(seeds[:, None] * _signed(0x9E3779B97F4A7C15) + mix64(position[:, None] + 0x632BE59BD9B4E019)
              + torch.arange(vocab, dtype=torch.long, device=seeds.device)[None])
    u = (_shr(mix64(x), 11).double() + 0.5) / float(1 << 53)  # uniform in (0, 1)
    return -torch.log(-torch.log(u))


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

    def encode(self, conv: list[dict]) -> list[int]:
        """Token ids of the prompt, after the context budget (see :func:`fit_context`)."""
        ids = self.ids(conv)
        if len(ids) <= self.budget:  # the common case: tokenize once
            return ids
        conv, dropped = fit_context(conv, lambda m: len(self.ids(m)), self.budget)
        self.stats["context_drops"] += bool(dropped)
        return self.ids(conv)[-self.budget:]


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

    @torch.no_grad()
    def _run(self, prompts: list[tuple], repeats: list[int], reuse: list[tuple[int, list | None]],
             temperature: float, seeds: list[int]) -> tuple[list[list[int]], list[tuple]]:
        """Prefill each unique prompt's uncached tokens once, repeat the cache ``repeats`` times,
        then decode all sequences together. Returns the new token ids and each sequence's
        (token ids, KV) for the next turn."""
        from transformers import StaticCache

        dev = self.model.device
        if self.window is not None and max(map(len, prompts)) + self.cfg.max_new_tokens > self.window:
            # past a sliding window, kept caches would leave padding between a row's tokens, and the window counts
            # cache columns: encode whole prompts (left-padded, so each row's tokens stay contiguous) and keep nothing
            reuse, keep_cache = [(0, None)] * len(prompts), False
        else:
            keep_cache = self.cfg.keep_cache
        cached = [c for c, _ in reuse]
        new = [p[c:] for p, c in zip(prompts, cached)]
        C, N, B0 = max(cached), max(map(len, new)), len(prompts)
        T = C + N + self.cfg.max_new_tokens
        # preallocated (a growing cache would copy itself at every token: most of the time at 64 episodes)
        cache = StaticCache(config=self.model.config, max_cache_len=T)
        if C:  # rows' kept caches, right-aligned so every row's new tokens start at column C
            ref = next(kv for _, kv in reuse if kv is not None)
            for li, (k0, _) in enumerate(ref):
                ks = k0.new_zeros(B0, k0.shape[0], C, k0.shape[2])
                vs = torch.zeros_like(ks)
                for r, (c, kv) in enumerate(reuse):
                    if c:
                        ks[r, :, C - c:] = kv[li][0][:, :c]
                        vs[r, :, C - c:] = kv[li][1][:, :c]
                cache.update(ks, vs, li)
        pad = self.tok.pad_token_id
        ids = torch.full((B0, N), pad, dtype=torch.long)
        mask = torch.zeros(B0, T, dtype=torch.long)
        pos = torch.zeros(B0, N, dtype=torch.long)
        for r, (c, n) in enumerate(zip(cached, new)):
            ids[r, N - len(n):] = torch.tensor(n)
            mask[r, C - c:C] = 1
            mask[r, C + N - len(n):C + N] = 1
            pos[r, N - len(n):] = torch.arange(c, c + len(n))
        out = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                         past_key_values=cache, use_cache=True)
        self.stats["prefilled"] += B0
        self.stats["prefill_tokens"] += sum(map(len, new))
        self.stats["reused_tokens"] += sum(cached)
        index = torch.repeat_interleave(torch.arange(B0), torch.tensor(repeats))
        logits, last = out.logits[:, -1].float(), torch.tensor([len(p) - 1 for p in prompts])
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
                    r, cols = int(rows[j]), mask[j, :n].bool().nonzero().flatten().to(dev)
                    keep[r] = (tuple(prompts[index[r]]) + tuple(fed[r]),
                               [(layer.keys[j][:, cols], layer.values[j][:, cols]) for layer in cache.layers])

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
            mask[:, C + N + t] = feed.long()
            out = self.model(input_ids=torch.where(feed, nxt, pad)[:, None].to(dev), attention_mask=mask.to(dev),
                             position_ids=last[:, None].to(dev), past_key_values=cache, use_cache=True)
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
        encoded = [tuple(self.encode(c)) for c in conversations]
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
