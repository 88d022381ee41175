"""Models: any Hugging Face causal LM (by local path or hub id, optional LoRA), or the
embedded default, a tiny Llama built from scratch with a tokenizer trained on the
environment's own text.

The tiny model's chat template marks the assistant span with ``{% generation %}`` so
TRL's ``assistant_only_loss`` works; every model is an ordinary HF folder, saved with
``save_pretrained`` and loaded back from disk. Nothing is downloaded at run time
unless the user names a hub id.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from iprkit.errors import IprkitError
from iprkit.settings import ModelSettings

SPECIALS = {"bos": "<|bos|>", "pad": "<|pad|>", "user": "<|user|>", "assistant": "<|assistant|>", "end": "<|end|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<|assistant|>{% generation %}{{ m['content'] }}<|end|>{% endgeneration %}"
    "{% else %}<|user|>{{ m['content'] }}<|end|>{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@dataclass(frozen=True)
class TinyPreset:
    """Sizes of a Llama built from scratch."""

    vocab_size: int
    """Byte-level BPE vocabulary size."""
    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Transformer blocks."""
    num_heads: int
    """Attention heads."""
    intermediate_size: int
    """MLP width."""
    max_positions: int
    """Context window in tokens."""


TINY_PRESETS = {
    "tiny": TinyPreset(vocab_size=2048, hidden_size=128, num_layers=6, num_heads=4, intermediate_size=512, max_positions=2048),
    "small": TinyPreset(vocab_size=4096, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=1376, max_positions=2048),
}


def is_preset(name: str) -> bool:
    return name in TINY_PRESETS


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | Path | None = None):
    """A byte-level BPE tokenizer trained on ``texts`` with iprkit's chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS["bos"], eos_token=SPECIALS["end"],
                                   pad_token=SPECIALS["pad"], additional_special_tokens=[SPECIALS["user"], SPECIALS["assistant"]])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    if out_dir:
        fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(tokenizer, preset: str = "tiny", seed: int = 0):
    """A Llama of a :data:`TINY_PRESETS` size, randomly initialised."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    p = TINY_PRESETS[preset]
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=p.hidden_size, num_hidden_layers=p.num_layers,
                      num_attention_heads=p.num_heads, num_key_value_heads=p.num_heads,
                      intermediate_size=p.intermediate_size, max_position_embeddings=p.max_positions,
                      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


_SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
              max_position_embeddings=512)
TINY_ARCHS = {
    "llama": _SMALL, "qwen2": _SMALL, "qwen3": {**_SMALL, "head_dim": 16}, "phi3": _SMALL, "olmo2": _SMALL,
    "mistral": {**_SMALL, "sliding_window": 32}, "gemma2": {**_SMALL, "head_dim": 16, "sliding_window": 32},
    "gemma3_text": {**_SMALL, "head_dim": 16, "sliding_window": 32},
    "gpt2": dict(n_embd=64, n_layer=2, n_head=4, n_positions=512),
    "gpt_neox": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=512),
}
"""Tiny random configs of common causal-LM architectures (sliding-window ones with a 32-token window), for
checking that an architecture works with the kit's rollout engine (``tests/test_architectures.py``)."""


def tiny_random(arch: str, tokenizer, seed: int = 0, **overrides):
    """A randomly initialised model of architecture ``arch`` (a :data:`TINY_ARCHS` key) over ``tokenizer``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(arch, **{**TINY_ARCHS[arch], **overrides}, vocab_size=len(tokenizer),
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def create_tiny(texts: Iterable[str], out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Train a tokenizer on ``texts``, build the model, save both as one HF folder."""
    if preset not in TINY_PRESETS:
        raise IprkitError(f"unknown model preset {preset!r}; choose one of {list(TINY_PRESETS)} or give a model path.")
    tok = train_tokenizer(texts, TINY_PRESETS[preset].vocab_size)
    model = build_tiny_model(tok, preset, seed)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    if not tok.chat_template:
        raise IprkitError(f"{path}: the tokenizer has no chat template. Use an instruct/chat model, or set "
                          "tokenizer.chat_template (iprkit.models.CHAT_TEMPLATE marks the assistant span) and save it.")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def inference_device() -> str:
    """Where a model that only writes turns runs: this process's GPU (``LOCAL_RANK`` under torchrun/accelerate,
    so K workers on K GPUs take one each), else the CPU. Training places its model itself (the Trainer)."""
    import os

    import torch

    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"


def free_gpu_memory() -> None:
    """Give the GPU memory of models no longer referenced back to the device (a server started next needs it;
    torch's allocator would keep it reserved for this process). Nothing on a CPU."""
    import gc
    import sys

    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        gc.collect()
        sys.modules["torch"].cuda.empty_cache()


def load_model(path: str | Path, cfg: ModelSettings | None = None, trainable: bool = False):
    """Load (model, tokenizer) from a folder or hub id.

    ``trainable``: with ``cfg.lora``, wrap the model in fresh LoRA adapters (an adapter folder is loaded with its
    adapters trainable instead). Not trainable: an adapter folder is merged into its base (one plain model, as fast
    as the base) and the model is moved to :func:`inference_device`, in ``cfg.dtype``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = cfg or ModelSettings()
    path = str(path)
    dtype = getattr(torch, cfg.dtype)
    if Path(path, "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM

        model = AutoPeftModelForCausalLM.from_pretrained(path, is_trainable=trainable, dtype=dtype)
        if not trainable:
            model = model.merge_and_unload().to(inference_device()).eval()
        return model, load_tokenizer(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise IprkitError(f"{path}: not a Hugging Face model folder or hub id ({str(e).splitlines()[0]}).") from None
    if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
        raise IprkitError(f"{path}: is a {config.architectures or config.model_type} model, not a causal LM; "
                          "the agent needs a *ForCausalLM model.")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    tok = load_tokenizer(path)
    if not trainable:
        return model.to(inference_device()).eval(), tok
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                                 target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM"))
    return model, tok


def adapter_base(path: str | Path) -> Path | None:
    """The base model folder of a LoRA adapter folder (None: not an adapter)."""
    p = Path(path, "adapter_config.json")
    return Path(json.loads(p.read_text())["base_model_name_or_path"]) if p.exists() else None


def merged_folder(path: str | Path) -> Path:
    """A plain model folder for ``path``: itself, or for a LoRA adapter its base with the adapter merged in, written
    once beside it (``<path>.merged``, atomically) for servers that load no adapters (``transformers serve``)."""
    path = Path(path)
    if adapter_base(path) is None:
        return path
    out = path.with_name(path.name + ".merged")
    if not (out / "config.json").exists():
        import os
        import shutil

        import torch
        from peft import AutoPeftModelForCausalLM

        base = json.loads(Path(adapter_base(path), "config.json").read_text())
        dtype = base.get("dtype") or base.get("torch_dtype") or "float32"
        model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype)).merge_and_unload()
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")  # workers may merge at once: each its own, first one kept
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        load_tokenizer(path).save_pretrained(tmp)
        try:
            tmp.rename(out)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def corpus(trajs) -> list[str]:
    """The env's own text (instructions, observations, expert turns) for tokenizer training."""
    out = []
    for t in trajs:
        out.append(t.instruction)
        out.append(t.observation)
        for s in t.steps:
            out.append(s.turn())
            out.append(s.observation)
    return out


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def model_card(path: str | Path) -> dict:
    p = Path(path, "config.json")
    return json.loads(p.read_text()) if p.exists() else {}
