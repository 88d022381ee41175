"""IPR's preference training: DPO plus NLL on the chosen side, on TRL's DPOTrainer.

Two things TRL does not do by itself, added here with a collator and a small subclass:

1. Multi-turn chosen/rejected (IPR's "entire" pairs: a step plus its continuation)
   contain observation (user) turns. TRL counts every completion token; we mask the
   user turns out of the log-probabilities, so only the agent's own tokens are scored.
   The mask is found by rendering the chat template turn by turn, so it works with any
   template.
2. The NLL term. TRL's ``sft`` loss is the token *mean* over the batch; the paper uses the
   *sum* over each chosen sequence (averaged over pairs). ``nll="sum"`` rescales TRL's
   term per batch by (chosen tokens / pairs), which makes it exactly the summed NLL.

The reference is the SFT model by default (the previous iteration on request); its
log-probs are computed once per iteration (``precompute_ref_log_probs``). With LoRA (``model.lora``) SFT's
adapter is merged into the SFT model, and each iteration trains adapters over it: when the reference is the
frozen base (the SFT model, the paper's), it is the adapter-disabled policy and costs no second copy; else
(``reference=previous`` after the first iteration) the reference is loaded beside it.
"""

import shutil
from pathlib import Path

import torch
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from iprkit.errors import IprkitError
from iprkit.progress import terminal, trainer_callbacks
from iprkit.settings import DPOSettings, ModelSettings


def assistant_token_mask(tok, prompt: list[dict], completion: list[dict], n_prompt_ids: int) -> list[int]:
    """1 for each completion token inside an assistant turn, 0 for user turns: each turn's
    span is where rendering ``prompt + completion[:i]`` and ``... [:i+1]`` differ."""
    render = lambda msgs, gen=False: list(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen,
                                                                  return_dict=True)["input_ids"])
    full = render(prompt + completion)
    mask = [0] * len(full)
    for i, m in enumerate(completion):
        if m["role"] != "assistant":
            continue
        start = len(render(prompt + completion[:i], gen=True))
        end = len(render(prompt + completion[: i + 1]))
        mask[start:end] = [1] * (end - start)
    return mask[n_prompt_ids:]


class MaskedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, with observation tokens removed from ``completion_mask``."""

    def torch_call(self, examples):
        out = super().torch_call(examples)
        if "chosen_loss_mask" not in examples[0]:
            return out
        rows = [[0] * len(e["prompt_ids"]) + list(e["chosen_loss_mask"]) for e in examples] + \
               [[0] * len(e["prompt_ids"]) + list(e["rejected_loss_mask"]) for e in examples]
        if self.max_length is not None:
            sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
            rows = [r[sl] for r in rows]
        width = out["completion_mask"].shape[1]
        keep = torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=out["completion_mask"].dtype)
        out["completion_mask"] = out["completion_mask"] * keep
        return out


class IPRTrainer(DPOTrainer):
    """DPOTrainer with observation masking and a summed NLL term."""

    def __init__(self, *args, nll: str = "sum", mask_observations: bool = True, **kwargs):
        self.nll_mode, self.mask_observations = nll, mask_observations
        super().__init__(*args, **kwargs)
        self._base_weights = list(self.loss_weights)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if not self.mask_observations:
            return dataset
        tok = getattr(processing_class, "tokenizer", processing_class)

        def masks(ex):
            n = len(ex["prompt_ids"])
            c = assistant_token_mask(tok, ex["prompt"], ex["chosen"], n)
            r = assistant_token_mask(tok, ex["prompt"], ex["rejected"], n)
            # the template renders prompt+completion in one piece, so lengths must agree with TRL's tokens
            c = (c + [1] * len(ex["chosen_ids"]))[: len(ex["chosen_ids"])]
            r = (r + [1] * len(ex["rejected_ids"]))[: len(ex["rejected_ids"])]
            return {"chosen_loss_mask": c, "rejected_loss_mask": r}

        return dataset.map(masks, desc=f"Masking observation turns in {dataset_name} dataset")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for col in ("chosen_loss_mask", "rejected_loss_mask"):
            if col not in self._signature_columns:
                self._signature_columns.append(col)

    def _compute_loss(self, model, inputs, return_outputs):
        if self.nll_mode == "sum" and "sft" in self.loss_types:
            # TRL's sft term is sum(-logp)/n_tokens over the batch; times n_tokens/n_pairs it is the
            # paper's per-pair summed NLL, averaged over pairs.
            chosen_mask = inputs["completion_mask"][..., 1:].chunk(2, dim=0)[0]
            scale = chosen_mask.sum().item() / max(1, chosen_mask.shape[0])
            self.loss_weights = [w * scale if t == "sft" else w for t, w in zip(self.loss_types, self._base_weights)]
        try:
            return super()._compute_loss(model, inputs, return_outputs)
        finally:
            self.loss_weights = list(self._base_weights)


def pairs_dataset(pairs: list[dict]):
    from datasets import Dataset

    if not pairs:
        raise IprkitError("no preference pairs to train on.")
    return Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs])


def pairs_on_disk(pairs: list[dict], folder: Path) -> Path:
    """The pairs as a dataset folder, for processes that train together: TRL caches its maps (reference log-probs)
    next to a dataset's files, and every process must find the same cache; an in-memory dataset's cache is in a
    temporary folder of each process's own."""
    pairs_dataset(pairs).save_to_disk(str(folder))
    return folder


def train_dpo(pairs: list[dict], policy_path: str | Path, ref_path: str | Path, cfg: DPOSettings, out_dir: str | Path,
              seed: int = 0, progress: bool = True, data: Path | None = None, model_cfg: ModelSettings | None = None) -> dict:
    """Train the policy (initialised from ``policy_path``) on ``pairs`` against the reference at ``ref_path``,
    with ``seed`` for the data order; saves the model to ``out_dir`` and returns training metrics. The caller
    sets torch's threads (the run's ``threads``). ``data``: the pairs as saved by :func:`pairs_on_disk` (several
    processes). ``model_cfg``: dtype, and LoRA adapters to train (the run's ``sft.model``)."""
    from transformers import set_seed

    from iprkit.models import adapter_base, load_model
    from iprkit.sft import is_main_process, peak_memory, per_process, reset_peak_memory, world_size

    set_seed(seed)
    reset_peak_memory()
    model, tok = load_model(policy_path, model_cfg, trainable=True)
    frozen = (adapter_base(policy_path) or Path(policy_path)) if hasattr(model, "peft_config") else None
    ref = None if frozen and frozen.resolve() == Path(ref_path).resolve() else load_model(ref_path, model_cfg)[0]
    loss_type, weights = ["sigmoid"], [1.0]
    if cfg.nll_weight > 0:
        loss_type, weights = ["sigmoid", "sft"], [1.0, cfg.nll_weight]
    if data is not None:
        from datasets import load_from_disk

        ds = load_from_disk(str(data))
    else:
        ds = pairs_dataset(pairs)
    n_steps = max(1, int(cfg.epochs * len(ds) / (cfg.batch_size * cfg.grad_accum)))
    args = DPOConfig(
        output_dir=str(Path(out_dir).parent / f"{Path(out_dir).name}.trainer"), beta=cfg.beta, loss_type=loss_type, loss_weights=weights,
        learning_rate=cfg.learning_rate, lr_scheduler_type=cfg.lr_scheduler, warmup_steps=int(cfg.warmup_ratio * n_steps),
        num_train_epochs=cfg.epochs, per_device_train_batch_size=per_process(cfg.batch_size, world_size()),
        gradient_accumulation_steps=cfg.grad_accum,
        max_length=cfg.max_length, precompute_ref_log_probs=True, bf16=cfg.bf16, use_cpu=not torch.cuda.is_available(),
        seed=seed, save_strategy="no", report_to="none", disable_tqdm=not progress or terminal(), logging_steps=5,
        dataset_num_proc=None, activation_checkpointing=cfg.gradient_checkpointing)
    collator = MaskedPreferenceCollator(pad_token_id=tok.pad_token_id, max_length=cfg.max_length)
    trainer = IPRTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok,
                         data_collator=collator, nll=cfg.nll, mask_observations=cfg.mask_observations,
                         callbacks=trainer_callbacks("DPO steps", progress))
    result = trainer.train()
    if is_main_process():  # processes training together: the first one writes
        shutil.rmtree(args.output_dir, ignore_errors=True)
        trainer.model.save_pretrained(out_dir)
        tok.save_pretrained(out_dir)
    return {"processes": world_size(), "train_loss": result.training_loss, "steps": result.global_step, "pairs": len(ds),
            **peak_memory(), "log_history": trainer.state.log_history}
