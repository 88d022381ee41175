"""Supervised fine-tuning of the base agent on expert trajectories, with TRL's SFTTrainer.

The data is conversational (``messages``: instruction and observations as user turns,
``Thought/Action`` as assistant turns). ``assistant_only_loss`` trains the assistant
turns only, as the paper does (right for pretrained models); a tiny model trained from
scratch learns better on all tokens, so its preset turns it off.
"""

from pathlib import Path

from iprkit.augment import renamed_copies
from iprkit.config import save_run_config
from iprkit.errors import IprkitError
from iprkit.io import write_json
from iprkit.layout import SFTPaths
from iprkit.models import corpus, count_parameters, create_tiny, is_preset, load_model
from iprkit.progress import terminal, trainer_callbacks
from iprkit.settings import SFTSettings
from iprkit.trajectory import Trajectory, to_dataset


def train_sft(trajs: list[Trajectory], cfg: SFTSettings, out_dir: str | Path, seed: int = 0,
              progress: bool = True) -> Path:
    """Train on ``trajs`` with ``seed`` (initialisation, data order, dropout); saves the model folder to
    ``out_dir/model`` and the resolved config and training metrics beside it. Returns the model folder.
    The caller sets torch's threads (the run's ``threads``). Under a launcher (torchrun, accelerate) every process
    calls this with the same arguments; each takes ``batch_size / world size`` examples per step and only the first
    writes (a tiny model's initial folder must exist before: :func:`prepare_init`)."""
    import torch
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    paths = SFTPaths(Path(out_dir))
    world, main = world_size(), is_main_process()
    if main:
        save_run_config(paths.config, cfg)
    set_seed(seed)
    reset_peak_memory()
    base = prepare_init(trajs, cfg, paths, seed) if is_preset(cfg.model.name_or_path) else cfg.model.name_or_path
    model, tok = load_model(base, cfg.model, trainable=True)
    if cfg.copy_warmup_steps > 0:
        _copy_warmup(model, tok, trajs, cfg, paths.warmup, seed, progress)
    trajs = list(trajs) + renamed_copies(trajs, cfg.augment_copies, seed=seed)
    ds = to_dataset(trajs).select_columns(["messages"]).shuffle(seed=seed)
    n_steps = cfg.max_steps if cfg.max_steps > 0 else int(cfg.epochs * len(ds) / (cfg.batch_size * cfg.grad_accum)) + 1
    args = SFTConfig(
        output_dir=str(paths.trainer), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * n_steps), per_device_train_batch_size=per_process(cfg.batch_size, world),
        gradient_accumulation_steps=cfg.grad_accum, max_length=cfg.max_length,
        assistant_only_loss=cfg.assistant_only_loss, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(), seed=seed, logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", disable_tqdm=not progress or terminal(), dataloader_num_workers=0,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                         callbacks=trainer_callbacks("SFT steps", progress))
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    result = trainer.train()
    if not main:
        return paths.model
    model = trainer.model
    if hasattr(model, "peft_config"):  # LoRA: keep the adapter, and the SFT model merged for every later stage
        model.save_pretrained(paths.adapter)
        tok.save_pretrained(paths.adapter)
        model = model.merge_and_unload()
    model.save_pretrained(paths.model)
    tok.save_pretrained(paths.model)
    write_json(paths.metrics, {"processes": world,
        "seed": seed, "train_loss": result.training_loss, "steps": result.global_step, "examples": len(ds),
        "parameters": count_parameters(model), "trainable_parameters": trainable, "runtime_s": result.metrics.get("train_runtime"),
        **peak_memory(), "log_history": trainer.state.log_history})
    return paths.model


def reset_peak_memory() -> None:
    """Start counting :func:`peak_memory` afresh (each training stage reports its own peak)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """The GPU memory this process's tensors took at most since :func:`reset_peak_memory` (``{}`` on CPU), for the
    stage's metrics."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "peak_gpu_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def world_size() -> int:
    """Processes training together (set by torchrun / accelerate launch; 1 otherwise)."""
    import os

    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", 0)) == 0


def per_process(batch_size: int, world: int) -> int:
    """Each process's share of a global batch."""
    if batch_size % world:
        raise IprkitError(f"batch_size={batch_size} does not divide among {world} processes; choose a multiple of {world}.")
    return batch_size // world


def prepare_init(trajs: list[Trajectory], cfg: SFTSettings, paths: SFTPaths, seed: int) -> Path:
    """The from-scratch tiny model and tokenizer in ``paths.init`` (made once: processes training together
    all load the same folder)."""
    if not (paths.init / "config.json").exists():
        create_tiny(corpus(trajs), paths.init, preset=cfg.model.name_or_path, seed=seed)
    return paths.init


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


def _copy_warmup(model, tok, trajs, cfg: SFTSettings, trainer_dir: Path, seed: int, progress: bool) -> None:
    import torch
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(trainer_dir), max_steps=cfg.copy_warmup_steps, learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant_with_warmup", warmup_steps=max(1, cfg.copy_warmup_steps // 10),
        per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length, bf16=cfg.bf16,
        activation_checkpointing=cfg.gradient_checkpointing, use_cpu=not torch.cuda.is_available(), seed=seed,
        logging_steps=cfg.logging_steps, save_strategy="no", report_to="none", disable_tqdm=not progress or terminal(), dataloader_num_workers=0)
    SFTTrainer(model=model, args=args, processing_class=tok,
               train_dataset=copy_dataset(trajs, cfg.copy_warmup_steps * cfg.batch_size, seed)).train()
