"""Chapter 2: the SFT base agent."""

CELLS = [
    ("md", """
# 2. The SFT base agent

## What this stage does, and why

Supervised fine-tuning teaches the base model to act like the expert: the loss is the negative log-likelihood of the
expert's turns given everything before them,

$$\\mathcal{L}_{\\text{SFT}}(\\theta) = -\\sum_{(u, e)} \\sum_{t} \\log \\pi_\\theta(a_t \\mid u, e_{<t}),$$

where $u$ is the instruction and $e_{<t}$ the turns (actions and observations) before turn $t$; the paper computes it
on the agent's turns only (observations are masked). The SFT agent $\\pi_0$ matters three times in IPR: it is the
first policy, the **fixed scorer** of every Monte Carlo step reward (chapter 3), and the **reference** of DPO
(chapter 5).
"""),
    ("md", """
## Where it lives in the kit

- `iprkit/sft.py`: TRL's `SFTTrainer` on the expert conversations (`iprkit/models.py` builds the tiny Llama from
  scratch, with a tokenizer trained on the env's text, or loads any Hugging Face causal LM, LoRA optional).
- Settings (`sft.*`) and their paper values: `epochs` 3, `learning_rate` 2e-5, `lr_scheduler` cosine,
  `warmup_ratio` 0.03, `assistant_only_loss` true (Llama-2-7B, global batch 48). The demo's `tiny` recipe differs on
  purpose: a 2M-parameter model from scratch needs all-token loss, a learning rate of 3e-3 and 2,500 steps.
- `sft_model=...` starts a run from an SFT model trained before (its folder is copied into the run).

## Run it

SFT, then a greedy evaluation on the held-out test games (and on the train tasks the iterations will explore):
"""),
    ("code", """
run_until(layout.stage(seed, "sft", 0, "eval"))
sft_paths = layout.sft(seed)
# absent when sft_model named a model trained elsewhere
sft = json.loads(sft_paths.metrics.read_text()) if sft_paths.metrics.exists() else {
    "log_history": [], "train_loss": None, "steps": None, "parameters": None}
evals = {split: json.loads(sft_paths.eval.metrics(split).read_text()) for split in sft_paths.eval.splits()}
evals
"""),
    ("code", """
import plotly.graph_objects as go

hist = [h for h in sft["log_history"] if "loss" in h]
go.Figure(go.Scatter(x=[h["step"] for h in hist], y=[h["loss"] for h in hist], mode="lines")).update_layout(
    title="SFT loss", xaxis_title="optimizer step", yaxis_title="loss (nats per token)")
"""),
    ("md", """
## How to read it

- `success_rate` is the share of test games won; `avg_reward` equals it on these games (they score only the win);
  `invalid_action_rate` is the share of turns with no parsable `Action:` line; `context_drops` counts prompts that
  were cut to the context budget.
- The loss curve of the tiny model has a plateau, then a drop: the drop is where it learns to copy names from the
  observation into its action (between 1,000 and 2,000 steps at batch 4). A run stopped on the plateau wins about as
  often as a random agent (15%); the full recipe wins about half of the held-out games.

## What to try

- `overrides = ["sft.max_steps=1500"]`: stop nearer the plateau and compare success (a new `run_dir`, or SFT is reused).
- `overrides = ["sft.assistant_only_loss=true"]`: the paper's masking; the tiny model learns more slowly with it.

## Pitfalls

- **Memorisation.** Trained long enough, the tiny model takes the expert's every action on its own SFT games; IPR's
  exploration of those games then finds no step where the agent errs. See chapter 0 and the `regime` preset.
- **The context budget.** `generation.max_context` should be near the longest SFT sequence: past it, the model acts on
  positions it never trained on and writes more invalid turns.
"""),
    ("code", """
write_metrics({"train_loss": sft["train_loss"], "steps": sft["steps"], "parameters": sft["parameters"],
               **{f"{split}_success": m["success_rate"] for split, m in evals.items()},
               **{f"{split}_reward": m["avg_reward"] for split, m in evals.items()}})
"""),
]
