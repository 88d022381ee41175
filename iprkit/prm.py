"""A learned step reward model (PRM) in the loop: Monte Carlo labels in, step rewards out (``mc.estimator``).

Labels. Every step the loop scored by Monte Carlo in earlier iterations (``step_rewards.jsonl``) is an
example: the conversation up to the scored action and the observation it brought (the state the estimate
is about), its MC mean, weighted by its rollout count (a terminal step: the env's reward, weighted N).

Model. ``AutoModelForSequenceClassification`` with one output, from the SFT model's folder: the SFT
backbone with a fresh linear head on the last token, all of it trained by transformers' ``Trainer`` on a
count-weighted squared error (:class:`WeightedRegressionTrainer`, the one thing the stock Trainer lacks).
Saved as an HF folder with ``prm_metrics.json`` (its error and correlation on held-out labels).

Estimators (:func:`estimate`), for iteration k >= 2 (trained on iterations < k; iteration 1 is pure Monte
Carlo, the warm-up that makes the first labels):

- ``prm``: the model's score, clipped to [0, 1], for every non-terminal step; no rollouts.
- ``hybrid``: the model scores every step; where the expert's and the agent's values at a step lie within
  ``pairs.step_margin + mc.prm_band`` of each other (the pair could go either way), both sides get Monte
  Carlo estimates as in ``mc``; elsewhere the model's scores stand.

Every estimate says which estimator made it (``estimator``: mc, prm, terminal) and keeps the model's score
beside a Monte Carlo mean (``prm``), for the views.
"""

import json
import math
import random
import shutil
from dataclasses import replace
from pathlib import Path

import torch
from transformers import Trainer

from iprkit.layout import PRM_METRICS
from iprkit.mc import MCEstimate, ScoreRequest, estimator_of
from iprkit.settings import MCSettings, PRMSettings
from iprkit.trajectory import Trajectory



def state_messages(expert: Trajectory, req: ScoreRequest) -> list[dict]:
    """The conversation of a scored state: the task, the steps up to the scored action, and its observation."""
    traj = replace(expert, steps=list(req.steps))
    return traj.messages() + [{"role": "user", "content": req.steps[-1].observation}]


def label_examples(experts: list[Trajectory], branches: dict[str, dict[int, Trajectory]], rows: list[dict],
                   n: int) -> list[dict]:
    """Examples (messages, label, weight) from one iteration's step rewards and the trajectories they scored.
    Rows made by the model itself (``estimator=prm``) are not labels."""
    by_task = {e.task_id: e for e in experts}
    out = []
    for r in rows:
        e = by_task.get(r["task_id"])
        if e is None or estimator_of(r) == "prm":
            continue
        t = r["step"]
        scored = e if r["side"] == "expert" else branches.get(e.task_id, {}).get(t)
        if scored is None or len(scored.steps) < t + 1:  # a row whose trajectory is not in this iteration's files
            continue
        steps = scored.steps[: t + 1]
        weight = n if r["terminal"] else r["n"]
        out.append({"messages": state_messages(e, ScoreRequest(e.task_id, steps)), "label": float(r["mean"]),
                    "weight": float(weight)})
    return out


def encode(tok, messages: list[dict], max_length: int) -> list[int]:
    """Token ids of a state, cut from the left to ``max_length`` (the scored action and its result stay)."""
    ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    return list(ids)[-max_length:]


class WeightedRegressionTrainer(Trainer):
    """``Trainer`` with a squared error weighted per example (an MC mean of N rollouts counts N times)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels, weights = inputs.pop("labels"), inputs.pop("weight")
        outputs = model(**inputs)
        pred = outputs.logits.squeeze(-1).float()
        loss = (weights * (pred - labels.float()) ** 2).sum() / weights.sum().clamp(min=1e-8)
        return (loss, outputs) if return_outputs else loss


def train_prm(examples: list[dict], base: str | Path, cfg: PRMSettings, out_dir: str | Path, seed: int = 0,
              progress: bool = True) -> dict:
    """Train a PRM from the model folder ``base`` on ``examples``; saves it to ``out_dir`` with its metrics."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainingArguments, set_seed

    from iprkit.errors import IprkitError
    from iprkit.models import load_tokenizer

    if len(examples) < 2:
        raise IprkitError(f"the PRM has {len(examples)} Monte Carlo labels to learn from; it needs earlier "
                          "iterations that scored steps (mc.estimator=mc for the first, the warm-up).")
    set_seed(seed)
    tok = load_tokenizer(base)
    shuffled = random.Random(seed).sample(examples, len(examples))
    n_val = max(1, int(cfg.holdout * len(shuffled))) if cfg.holdout > 0 else 0
    val, train = shuffled[:n_val], shuffled[n_val:]
    rows = lambda xs: Dataset.from_list([{"input_ids": encode(tok, x["messages"], cfg.max_length), "labels": x["label"],
                                          "weight": x["weight"]} for x in xs])
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1, problem_type="regression")
    model.config.pad_token_id = tok.pad_token_id
    args = TrainingArguments(
        output_dir=str(Path(out_dir).parent / f"{Path(out_dir).name}.trainer"), num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate, per_device_train_batch_size=cfg.batch_size, lr_scheduler_type="cosine",
        warmup_steps=0, weight_decay=0.0, seed=seed, save_strategy="no", report_to="none", logging_steps=10,
        disable_tqdm=not progress, remove_unused_columns=False, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0)
    trainer = WeightedRegressionTrainer(model=model, args=args, train_dataset=rows(train),
                                        data_collator=DataCollatorWithPadding(tok))
    result = trainer.train()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    shutil.rmtree(args.output_dir, ignore_errors=True)
    metrics = {"examples": len(examples), "train": len(train), "heldout": len(val), "train_loss": result.training_loss,
               "steps": result.global_step, **heldout_metrics(PRM(out_dir, tok=tok, model=model), val)}
    Path(out_dir, PRM_METRICS).write_text(json.dumps(metrics, indent=2))
    return metrics


def heldout_metrics(prm: "PRM", val: list[dict]) -> dict:
    """Weighted mean squared error and Pearson correlation of the PRM's scores against held-out MC means."""
    if not val:
        return {}
    pred = prm.score([x["messages"] for x in val])
    y, w = [x["label"] for x in val], [x["weight"] or 1.0 for x in val]
    mse = sum(wi * (p - yi) ** 2 for p, yi, wi in zip(pred, y, w)) / sum(w)
    mp, my = sum(pred) / len(pred), sum(y) / len(y)
    cov = sum((p - mp) * (yi - my) for p, yi in zip(pred, y))
    sd = math.sqrt(sum((p - mp) ** 2 for p in pred) * sum((yi - my) ** 2 for yi in y))
    return {"heldout_mse": mse, "heldout_pearson": cov / sd if sd else None}


class PRM:
    """A trained PRM folder, scoring states (conversations) in batches."""

    def __init__(self, path: str | Path, batch_size: int = 32, max_length: int = 512, tok=None, model=None):
        from transformers import AutoModelForSequenceClassification

        from iprkit.models import inference_device, load_tokenizer

        self.path, self.batch_size, self.max_length = Path(path), batch_size, max_length
        self.tok = tok or load_tokenizer(path)
        self.model = (model or AutoModelForSequenceClassification.from_pretrained(str(path)).to(inference_device())).eval()
        self.forward_tokens = 0

    @torch.no_grad()
    def score(self, conversations: list[list[dict]]) -> list[float]:
        out = []
        dev = next(self.model.parameters()).device
        for i in range(0, len(conversations), self.batch_size):
            ids = [encode(self.tok, c, self.max_length) for c in conversations[i:i + self.batch_size]]
            batch = self.tok.pad({"input_ids": ids}, return_tensors="pt")
            self.forward_tokens += int(batch["attention_mask"].sum())
            logits = self.model(**{k: v.to(dev) for k, v in batch.items()}).logits.squeeze(-1).float()
            out += [min(1.0, max(0.0, v)) for v in logits.tolist()]
        return out


def estimate(prm: PRM, experts: dict[str, Trajectory], reqs: list[ScoreRequest], tags: list[tuple], cfg: MCSettings,
             margin: float, run_mc) -> tuple[list[MCEstimate], dict]:
    """Step rewards for ``reqs`` (tagged (task, step, side)) by ``cfg.estimator`` (prm or hybrid);
    ``run_mc(requests)`` gives Monte Carlo estimates and their counts (:func:`iprkit.mc.score`)."""
    live = [i for i, r in enumerate(reqs) if r.terminal_reward is None]
    scores = dict(zip(live, prm.score([state_messages(experts[reqs[i].task_id], reqs[i]) for i in live])))
    value = {i: scores[i] if i in scores else float(reqs[i].terminal_reward) for i in range(len(reqs))}
    mc_needed = []
    if cfg.estimator == "hybrid":
        at: dict[tuple, dict[str, int]] = {}
        for i, (task, step, side) in enumerate(tags):
            at.setdefault((task, step), {})[side] = i
        for sides in at.values():
            if {"expert", "agent"} <= sides.keys() and abs(value[sides["expert"]] - value[sides["agent"]]) <= margin + cfg.prm_band:
                mc_needed += [i for i in sides.values() if i in scores]
    mc_needed = sorted(set(mc_needed))
    mc_ests, counts = run_mc([reqs[i] for i in mc_needed]) if mc_needed else ([], {})
    by_mc = dict(zip(mc_needed, mc_ests))
    out = []
    for i, r in enumerate(reqs):
        if i in by_mc:
            out.append(replace(by_mc[i], estimator="mc", prm=scores[i]))
        elif i in scores:
            out.append(MCEstimate(scores[i], ci_low=scores[i], ci_high=scores[i], estimator="prm", prm=scores[i]))
        else:
            out.append(MCEstimate(value[i], terminal=True, ci_low=value[i], ci_high=value[i], estimator="terminal"))
    counts = {**counts, "prm_scored": len(scores), "mc_scored": len(mc_needed), "prm_forward_tokens": prm.forward_tokens}
    return out, counts
