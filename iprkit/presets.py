"""Named run configurations for ``iprkit run --preset NAME`` (each overridable field by field).

- ``smoke``: TextWorld, a handful of games, a barely trained tiny model; about a minute.
  For tests: it exercises every stage, not the method's quality.
- ``demo``: the README's main job: TextWorld easy (10-step episodes), the tiny model from scratch
  (the ``tiny`` SFT recipe, about 10 minutes), then one ETO and one IPR iteration along 64 train games
  SFT did not see (``explore_held_out``), evaluated on 100 test games. 3.5-4.5 minutes after SFT on
  2 CPU cores (measured per stage in ``timings.json``: Monte Carlo 45-75 s, IPR exploration 30 s,
  DPO 0.5 + 1 min, evaluation 15-25 s per model); generating the 964 games first adds about 9 minutes.
- ``regime``: the paper's data regime at tiny scale, for the science table (``benchmarks/science_table.py``):
  3,000 TextWorld easy games, SFT for 3 epochs (the tiny recipe's learning rate; it no longer memorises its tasks),
  then each iteration explores a fresh sample of 64 of the agent's own SFT tasks (the paper explores its SFT
  tasks), Monte Carlo with the paper's N = 5 at temperature 1, two ETO and two IPR iterations, 3 seeds, evaluated on
  500 test games (paired comparisons see about 5 points; README's power table) and on the explored tasks.
  Generating the games takes about 15 minutes once (cached); each seed about 25 minutes on 2 CPU cores (seed 2: 23, alone on the machine).
- ``paper``: the paper's hyper-parameters (SFT 3 epochs at 2e-5, MC N=5 at temperature 1,
  DPO beta 0.1 + summed NLL at 3e-6, reference = SFT) for one GPU: bf16, LoRA adapters (the paper trained all
  weights on 8 GPUs), gradient checkpointing, and rollouts on a vLLM server the kit starts for each stage
  (``server.kind=transformers`` without vLLM; ``server.backend=hf`` for the kit's own decode loop). Set
  ``sft.model.name_or_path`` to a real model (Llama-2-7B in the paper); README's "On a GPU" has its memory
  and ``benchmarks/gpu_check.sh`` runs it small.
"""

SFT_PRESETS = {
    # what a ~2M-parameter model trained from scratch on 2 CPU cores needs (measured here, 100 held-out easy games):
    # all-token loss, a high learning rate, and many optimizer steps. Copying names from the context appears
    # between 1,000 and 2,000 steps; batch 4 x 2,500 steps trains in about 10 minutes (batch 8 x 1,000 steps: 14%, no
    # better than random; batch 8 x 2,000 steps: 67% in 15 minutes). README's Benchmarks has the 3-seed figures.
    "tiny": {"model": {"name_or_path": "tiny"}, "learning_rate": 3e-3, "assistant_only_loss": False,
             "max_steps": 2500, "batch_size": 4, "lr_scheduler": "cosine", "warmup_ratio": 0.03},
    "smoke": {"model": {"name_or_path": "tiny"}, "learning_rate": 3e-3, "assistant_only_loss": False,
              "max_steps": 20, "batch_size": 4, "logging_steps": 5},
    # the paper's (Llama-2-7B, 4 GPUs, global batch 48), with LoRA to fit one GPU (model.lora=false: all weights, as the
    # paper): set model.name_or_path to your model
    "paper": {"model": {"name_or_path": "meta-llama/Llama-2-7b-hf", "dtype": "bfloat16", "lora": True}, "learning_rate": 2e-5,
              "epochs": 3.0, "lr_scheduler": "cosine", "warmup_ratio": 0.03, "batch_size": 4, "grad_accum": 12,
              "assistant_only_loss": True, "bf16": True, "max_length": 4096, "gradient_checkpointing": True},
}
"""Named starting points for :class:`~iprkit.settings.SFTSettings` (``iprkit sft --preset``; overridable field by field)."""

RUN_PRESETS = {
    "smoke": {
        "env": "textworld", "env_kwargs": {"preset": "easy", "n_train": 24, "n_test": 4, "max_steps": 6},
        "n_explore": 4, "methods": ["sft", "eto", "ipr"], "iterations": 1, "eto_iterations": 1, "seeds": [0],
        "sft": {**SFT_PRESETS["smoke"], "max_steps": 30, "batch_size": 8},
        "mc": {"n": 2, "temperature": 0.7},
        "dpo": {"learning_rate": 1e-4, "epochs": 1.0, "batch_size": 4, "warmup_ratio": 0.0},
        "generation": {"max_new_tokens": 24, "batch_size": 32},
    },
    "demo": {
        # SFT (the tiny recipe, about 10 minutes) is the largest part
        # the tiny model memorises its 800 SFT games, so IPR explores along 64 more that SFT never saw
        # 10 steps: the SFT agent wins in 5 or fewer (2 of 56 wins took 9 and 11); failures ran all 15 of the env's default
        "env": "textworld", "env_kwargs": {"preset": "easy", "n_train": 864, "n_test": 100, "max_steps": 10},
        "n_experts": 800, "n_explore": 64, "explore_held_out": True, "methods": ["sft", "eto", "ipr"], "iterations": 1, "eto_iterations": 1, "seeds": [0],
        "sft": SFT_PRESETS["tiny"],
        # MC only where the agent's action differs from the expert's (the only steps that can give a pair)
        "mc": {"n": 3, "temperature": 0.7, "score_same_action": False},
        # 2e-4 drove DPO margins past 20 and raised invalid turns (IPR 56 -> 48%, ETO -> 46%, seed 0); 3e-5 did not
        "dpo": {"learning_rate": 3e-5, "epochs": 2.0, "batch_size": 8, "warmup_ratio": 0.1},
        # SFT turns are at most 42 tokens and its sequences at most 437; 128 episodes at once: evaluation 37 -> 24 s
        "generation": {"max_new_tokens": 48, "batch_size": 128, "max_context": 512},
    },
    "regime": {
        # 3 epochs x 3,000 games at batch 4 = 2,250 steps: the tiny recipe's budget spent on 4x the tasks, seen 3 times
        "env": "textworld", "env_kwargs": {"preset": "easy", "n_train": 3000, "n_test": 500, "max_steps": 10},
        "n_explore": 64, "explore_sample": "fresh", "methods": ["sft", "eto", "ipr"], "iterations": 2,
        "eto_iterations": 2, "seeds": [0, 1, 2],
        "sft": {**SFT_PRESETS["tiny"], "max_steps": -1, "epochs": 3.0},
        # at 1.0 the demo's SFT agent keeps 34% of its greedy 53% and half the tasks' 5 samples are mixed (won and lost),
        # the most of any temperature (benchmarks/scorer_temperature.py; results/scorer_temperature_demo_sft_seed0.json)
        "mc": {"n": 5, "temperature": 1.0, "score_same_action": False},
        "dpo": {"learning_rate": 3e-5, "epochs": 2.0, "batch_size": 8, "warmup_ratio": 0.1},
        "generation": {"max_new_tokens": 48, "batch_size": 128, "max_context": 512},
    },
    "paper": {
        "env": "alfworld", "methods": ["sft", "eto", "ipr"], "iterations": 6, "eto_iterations": 3, "seeds": [0],
        "sft": SFT_PRESETS["paper"],
        "mc": {"n": 5, "temperature": 1.0, "scorer": "sft"},
        "dpo": {"beta": 0.1, "nll_weight": 1.0, "nll": "sum", "learning_rate": 3e-6, "lr_scheduler": "constant_with_warmup",
                "warmup_ratio": 0.1, "epochs": 3.0, "batch_size": 4, "grad_accum": 12, "bf16": True, "max_length": 4096,
                "gradient_checkpointing": True},
        "generation": {"max_new_tokens": 512, "batch_size": 64},
        "server": {"backend": "server", "kind": "vllm", "launch": True, "concurrency": 64},
    },
}


def run_settings(preset: str, config: str | None = None, overrides: list[str] | None = None):
    """The :class:`~iprkit.settings.RunSettings` of ``iprkit run --preset P [--config F] [KEY=VALUE ...]``.

    A preset's env settings belong to its env: a user who names another env (``env=alfworld``) starts
    from that env's own defaults, not from the preset's TextWorld sizes."""
    from iprkit.config import load_config, load_layer, merge
    from iprkit.envs import canonical
    from iprkit.errors import IprkitError
    from iprkit.settings import RunSettings

    if preset not in RUN_PRESETS:
        raise IprkitError(f"unknown preset {preset!r}; choose one of {list(RUN_PRESETS)}.")
    base = dict(RUN_PRESETS[preset])
    user = load_layer(config, overrides)
    if "env" in user and canonical(str(user["env"])) != canonical(base.get("env", "textworld")):
        base.pop("env_kwargs", None)
    from iprkit.loop import check_run

    cfg = load_config(RunSettings, None, None, base=merge(base, user), where=config or "config")
    check_run(cfg)
    return cfg
