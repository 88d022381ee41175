"""Supervised fine-tuning of the base agent on expert trajectories, with TRL's SFTTrainer.

The data is conversational (``messages``: instruction and observations as user turns,
``Thought/Action`` as assistant turns). ``assistant_only_loss`` trains the assistant
turns only, as the paper does (right for pretrained models); a tiny model trained from
scratch learns better on all tokens, so its preset turns it off.
"""

from dataclasses import dataclass, field
from pathlib import Path

from iprkit.augment import renamed_copies
from iprkit.config import save_run_config
from iprkit.io import write_json
from iprkit.models import ModelConfig, corpus, count_parameters, create_tiny, is_preset, load_model
from iprkit.trajectory import Trajectory, to_dataset


@dataclass
class SFTSettings:
    """Supervised fine-tuning (defaults: the paper's, except where CPU needs otherwise)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to train (a tiny preset is built from scratch on the trajectories' text)."""
    epochs: float = 3.0
    """Passes over the expert trajectories (the paper: 3)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: run all epochs)."""
    learning_rate: float = 2e-5
    """Peak learning rate (the paper: 2e-5 for Llama-2-7B; the tiny preset uses 3e-3)."""
    lr_scheduler: str = "cosine"
    """transformers scheduler name (the paper: cosine)."""
    warmup_ratio: float = 0.03
    """Fraction of steps for linear warm-up (the paper: 0.03)."""
    batch_size: int = 8
    """Sequences per optimizer step on one device."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    max_length: int = 2048
    """Longest training sequence in tokens (longer ones are truncated)."""
    assistant_only_loss: bool = True
    """Loss on assistant turns only (the paper); False trains on all tokens."""
    bf16: bool = False
    """bfloat16 mixed precision (GPU only; keep False on CPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory for 7B models on GPU, but each step is slower.
    TRL's default is True, which made the tiny model's steps 1.5x slower; passed explicitly (as transformers 5's
    ``activation_checkpointing``)."""
    threads: int = 2
    """torch CPU threads."""
    seed: int = 0
    """Seed for initialisation, shuffling and dropout."""
    logging_steps: int = 25
    """Log the loss every N steps (to the run's trainer_state.json)."""
    group_by_length: bool = True
    """Batch trajectories of similar length together (less padding, faster on CPU)."""
    copy_warmup_steps: int = 0
    """Before SFT, train this many steps on synthetic copy sequences (random words of the trajectories,
    then the same words again), so a model trained from scratch learns to copy from its context. 0 = off."""
    augment_copies: int = 0
    """Add this many copies of every trajectory with its entities renamed (``iprkit.augment``;
    needs envs that list entities, e.g. TextWorld). 0 = off (the paper)."""


SFT_PRESETS = {
    # what a ~2M-parameter model trained from scratch on 2 CPU cores needs (measured here, 100 held-out easy games):
    # all-token loss, a high learning rate, and many optimizer steps. Copying names from the context appears
    # between 1,000 and 2,000 steps; batch 4 x 2,500 steps trains in about 10 minutes (batch 8 x 1,000 steps: 14%, no
    # better than random; batch 8 x 2,000 steps: 67% in 15 minutes). README's Benchmarks has the 3-seed figures.
    "tiny": {"model": {"name_or_path": "tiny"}, "learning_rate": 3e-3, "assistant_only_loss": False,
             "max_steps": 2500, "batch_size": 4, "lr_scheduler": "cosine", "warmup_ratio": 0.03},
    "smoke": {"model": {"name_or_path": "tiny"}, "learning_rate": 3e-3, "assistant_only_loss": False,
              "max_steps": 20, "batch_size": 4, "logging_steps": 5},
    # the paper's (Llama-2-7B, 4 GPUs, global batch 48): set model.name_or_path to your model
    "paper": {"model": {"name_or_path": "meta-llama/Llama-2-7b-hf", "dtype": "bfloat16"}, "learning_rate": 2e-5,
              "epochs": 3.0, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "batch_size": 4, "grad_accum": 12,
              "assistant_only_loss": True, "bf16": True, "max_length": 4096, "gradient_checkpointing": True},
}
"""Named starting points for :class:`SFTSettings` (overridable field by field)."""


def train_sft(trajs: list[Trajectory], cfg: SFTSettings, out_dir: str | Path, progress: bool = True) -> Path:
    """Train on ``trajs``; saves the model folder to ``out_dir/model`` and the resolved
    config and training metrics beside it. Returns the model folder."""
    import torch
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    out_dir = Path(out_dir)
    save_run_config(out_dir, cfg, "sft_config.json")
    torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    base = cfg.model.name_or_path
    if is_preset(base):
        base = create_tiny(corpus(trajs), out_dir / "init", preset=base, seed=cfg.seed)
    model, tok = load_model(base, cfg.model, trainable=True)
    if cfg.copy_warmup_steps > 0:
        _copy_warmup(model, tok, trajs, cfg, out_dir, progress)
    trajs = list(trajs) + renamed_copies(trajs, cfg.augment_copies, seed=cfg.seed)
    ds = to_dataset(trajs).select_columns(["messages"]).shuffle(seed=cfg.seed)
    n_steps = cfg.max_steps if cfg.max_steps > 0 else int(cfg.epochs * len(ds) / (cfg.batch_size * cfg.grad_accum)) + 1
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * n_steps), per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        assistant_only_loss=cfg.assistant_only_loss, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(), seed=cfg.seed, logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", disable_tqdm=not progress, dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    result = trainer.train()
    model_dir = out_dir / "model"
    trainer.model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    write_json(out_dir / "sft_metrics.json", {
        "train_loss": result.training_loss, "steps": result.global_step, "examples": len(ds),
        "parameters": count_parameters(trainer.model), "runtime_s": result.metrics.get("train_runtime"),
        "log_history": trainer.state.log_history})
    return model_dir


def copy_dataset(trajs: list[Trajectory], n: int, seed: int = 0):
    """``n`` texts of 8-24 random words from the trajectories, a newline, and the same words again."""
    import random

    from datasets import Dataset

    words = sorted({w for t in trajs for text in (t.instruction, t.observation, *(s.observation for s in t.steps))
                    for w in text.split()})
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        span = " ".join(rng.choice(words) for _ in range(rng.randint(8, 24)))
        texts.append(f"{span}\n{span}")
    return Dataset.from_dict({"text": texts})


def _copy_warmup(model, tok, trajs, cfg: SFTSettings, out_dir: Path, progress: bool) -> None:
    import torch
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(out_dir / "warmup"), max_steps=cfg.copy_warmup_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant_with_warmup", warmup_steps=max(1, cfg.copy_warmup_steps // 10),
        per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing, use_cpu=not torch.cuda.is_available(), seed=cfg.seed,
        logging_steps=cfg.logging_steps, save_strategy="no", report_to="none", disable_tqdm=not progress, dataloader_num_workers=0)
    SFTTrainer(model=model, args=args, processing_class=tok,
               train_dataset=copy_dataset(trajs, cfg.copy_warmup_steps * cfg.batch_size, cfg.seed)).train()
