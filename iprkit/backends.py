"""Generation backends: the seam between the rollout engine and a model runtime.

A backend turns chat conversations into assistant turns. :class:`HFBackend` runs a
``transformers`` model in-process: one batched, left-padded ``generate`` per call;
identical greedy prompts are generated once; identical sampled prompts (N rollouts
from one state) are prefilled once and their KV cache repeated, so a shared prefix is
never encoded twice. A vLLM backend would implement the same :meth:`generate`.
"""

from dataclasses import dataclass
from typing import Protocol

import torch

from iprkit.prompts import fit_context


@dataclass
class GenerationConfig:
    """How the model writes a turn."""

    max_new_tokens: int = 96
    """Tokens per assistant turn (the paper uses 512 with 7B models)."""
    temperature: float = 0.0
    """0 = greedy; > 0 samples at this temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    batch_size: int = 64
    """Most sequences in one generate call."""
    max_context: int | None = None
    """Prompt budget in tokens; None = the model's window minus max_new_tokens."""
    share_prefix: bool = True
    """Prefill identical sampled prompts once and repeat the KV cache (False: encode each copy)."""


class Backend(Protocol):
    def generate(self, conversations: list[list[dict]], temperature: float, seed: int) -> list[str]:
        """One assistant turn per conversation."""


class HFBackend:
    """A transformers causal LM behind the :class:`Backend` seam."""

    def __init__(self, model, tokenizer, cfg: GenerationConfig | None = None):
        self.model, self.tok, self.cfg = model.eval(), tokenizer, cfg or GenerationConfig()
        window = getattr(model.config, "max_position_embeddings", 2048)
        self.budget = self.cfg.max_context or max(64, window - self.cfg.max_new_tokens)
        eos = {tokenizer.eos_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        eos |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        self.eos = sorted(e for e in eos if e is not None)
        self.stats = {"calls": 0, "sequences": 0, "prefilled": 0, "new_tokens": 0, "context_drops": 0}

    def _ids(self, conv: list[dict]) -> list[int]:
        return list(self.tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"])

    def encode(self, conv: list[dict]) -> list[int]:
        """Token ids of the prompt, after the context budget (see :func:`fit_context`)."""
        ids = self._ids(conv)
        if len(ids) <= self.budget:  # the common case: tokenize once
            return ids
        conv, dropped = fit_context(conv, lambda m: len(self._ids(m)), self.budget)
        self.stats["context_drops"] += bool(dropped)
        return self._ids(conv)[-self.budget:]

    def _pad(self, seqs: list[list[int]]):
        n = max(map(len, seqs))
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (n - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
        return ids, mask

    @torch.no_grad()
    def _generate_ids(self, uniq: list[list[int]], repeats: list[int], temperature: float) -> list[list[int]]:
        """Generate for each unique prompt ``repeats[i]`` times; returns new token ids."""
        sample = temperature > 0
        kw = dict(max_new_tokens=self.cfg.max_new_tokens, do_sample=sample, eos_token_id=self.eos,
                  pad_token_id=self.tok.pad_token_id)
        if sample:
            kw.update(temperature=temperature, top_p=self.cfg.top_p, top_k=0)
        ids, mask = self._pad(uniq)
        index = torch.repeat_interleave(torch.arange(len(uniq)), torch.tensor(repeats))
        if sample and self.cfg.share_prefix and len(index) > len(uniq) and ids.shape[1] > 1:
            # prefill every unique prompt once (all but its last token), then repeat the cache
            from transformers import DynamicCache

            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            cache = DynamicCache(config=self.model.config)
            self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                       past_key_values=cache, use_cache=True)
            cache.reorder_cache(index)
            self.stats["prefilled"] += len(uniq)
            out = self.model.generate(input_ids=ids[index], attention_mask=mask[index], past_key_values=cache, **kw)
        else:
            out = self.model.generate(input_ids=ids[index], attention_mask=mask[index], **kw)
        new = out[:, ids.shape[1]:].tolist()
        self.stats["calls"] += 1
        self.stats["sequences"] += len(index)
        result = []
        for row in new:
            cut = next((i for i, t in enumerate(row) if t in self.eos), len(row))
            self.stats["new_tokens"] += min(cut + 1, len(row))
            result.append(row[:cut])
        return result

    def generate(self, conversations: list[list[dict]], temperature: float = 0.0, seed: int = 0) -> list[str]:
        """One assistant turn per conversation, batched; deterministic for a seed."""
        encoded = [tuple(self.encode(c)) for c in conversations]
        order: dict[tuple, list[int]] = {}
        for i, e in enumerate(encoded):
            order.setdefault(e, []).append(i)
        texts: list[str | None] = [None] * len(conversations)
        groups = list(order.items())
        per_group = [1 if temperature <= 0 else len(idx) for _, idx in groups]  # greedy: one per distinct prompt
        torch.manual_seed(seed)
        start = 0
        while start < len(groups):  # chunks of at most batch_size sequences
            end, total = start, 0
            while end < len(groups) and (total == 0 or total + per_group[end] <= self.cfg.batch_size):
                total += per_group[end]
                end += 1
            chunk = groups[start:end]
            outs = self._generate_ids([list(p) for p, _ in chunk], per_group[start:end], temperature)
            k = 0
            for (_, idx), n in zip(chunk, per_group[start:end]):
                for j, i in enumerate(idx):
                    texts[i] = self.tok.decode(outs[k + (j if n > 1 else 0)], skip_special_tokens=True)
                k += n
            start = end
        return texts
