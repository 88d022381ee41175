"""Where CPU time goes, against the machine's own bound: SFT steps and rollouts as achieved FLOP/s.

    python benchmarks/roofline.py [--run runs/demo] [--sft-steps 60] [--episodes 64] [--threads 2] [--iteration]

1. The bounds: fp32 ``torch.mm`` of squares 512, 1024 and 2048 on ``--threads`` threads (the best GFLOP/s), and
   the memory read rate (a 256 MB sum): a decode step reads every row's whole KV cache, so at batch 128 and a few
   hundred tokens of context it is bound by memory, not by multiplies.
2. SFT: the ``tiny`` recipe (batch 4, from scratch) for ``--sft-steps`` steps on the run's expert trajectories.
   Wall time split into model forward, backward (the rest of ``training_step``), and everything else (the
   optimizer, data collation, TRL's per-step extras, logging); tokens computed vs real (the rest is padding).
3. Rollouts: ``--episodes`` greedy test episodes of the run's SFT agent through the rollout engine (the demo's
   generation settings). Wall split into model forward, the rest of ``generate`` (sampling, cache bookkeeping,
   tokenization), env steps and resets, and the engine's own work.
4. One demo iteration's rollouts (``--iteration``): the IPR iteration 1 exploration along every expert step
   (greedy) and its Monte Carlo scoring (sampled, full decode batches), on the run's own config, from its SFT
   model, with no MC cache: the stages where a demo iteration's rollout time goes.

FLOPs count the matrix multiplies of the weights (2 per parameter per token forward, 6 for training, the LM head
included, embedding lookups not) and attention's (4 x layers x width x context per token forward). Prints a table
and writes ``benchmarks/results/roofline.json``. Run it on an idle machine; compare stages within one run.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from iprkit.layout import RunLayout, finished_demo_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def bound(threads: int) -> dict:
    torch.set_num_threads(threads)
    best = {}
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.5:
            torch.mm(a, b)
            reps += 1
        best[n] = 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
    x = torch.ones(64 << 20)  # 256 MB: far past the caches, as a decode step's reads of the KV cache are
    x.sum()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.5:
        x.sum()
        reps += 1
    read = x.numel() * 4 * reps / (time.perf_counter() - t0) / 1e9
    return {"gflops": round(max(best.values()), 1), "by_size": {k: round(v, 1) for k, v in best.items()},
            "read_gb_per_s": round(read, 1)}


def shape(model) -> dict:
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    head = cfg.vocab_size * cfg.hidden_size  # the LM head's multiply (tied or not)
    tied = getattr(cfg, "tie_word_embeddings", False)
    return {"params": total, "matmul_params": total - emb + (head if tied else 0), "layers": cfg.num_hidden_layers,
            "width": cfg.hidden_size}


class Timer:
    """Seconds spent inside a module's forward (outermost calls only)."""

    def __init__(self, module):
        self.seconds, self.calls, self._t0, self._depth = 0.0, 0, 0.0, 0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def _post(self, *_):
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._t0
            self.calls += 1


def sft_profile(run: RunLayout, steps: int, bound_gflops: float) -> dict:
    import transformers

    from iprkit.config import from_dict
    from iprkit.presets import SFT_PRESETS
    from iprkit.settings import SFTSettings
    from iprkit.sft import train_sft
    from iprkit.trajectory import load_trajectories

    trajs = load_trajectories(run.experts("train"))[:800]
    seen = {"step_s": 0.0, "tokens": 0, "real": 0, "ctx2": 0, "model": None, "timer": None}
    real_step = transformers.Trainer.training_step

    def training_step(self, model, inputs, *a, **kw):
        if seen["timer"] is None:
            seen["model"], seen["timer"] = model, Timer(model)
        ids = inputs["input_ids"]
        seen["tokens"] += ids.numel()
        seen["real"] += int(inputs["attention_mask"].sum()) if "attention_mask" in inputs else ids.numel()
        seen["ctx2"] += ids.shape[0] * ids.shape[1] ** 2  # attention: each token attends to ~half the row
        t0 = time.perf_counter()
        out = real_step(self, model, inputs, *a, **kw)
        seen["step_s"] += time.perf_counter() - t0
        return out

    transformers.Trainer.training_step = training_step
    cfg = from_dict(SFTSettings, {**SFT_PRESETS["tiny"], "max_steps": steps, "logging_steps": steps})
    out = Path("/tmp/iprkit-roofline-sft")
    t0 = time.perf_counter()
    try:
        train_sft(trajs, cfg, out, seed=0, progress=False)
    finally:
        transformers.Trainer.training_step = real_step
    wall = time.perf_counter() - t0
    s = shape(seen["model"])
    flops = 6 * s["matmul_params"] * seen["tokens"] + 3 * 4 * s["layers"] * s["width"] * seen["ctx2"] / 2
    fwd = seen["timer"].seconds
    train_s = seen["step_s"]
    return {"steps": steps, "wall_s": round(wall, 2), "train_steps_s": round(train_s, 2),
            "forward_s": round(fwd, 2), "backward_s": round(train_s - fwd, 2),
            "other_s": round(wall - train_s, 2), "tokens_computed": seen["tokens"], "tokens_real": seen["real"],
            "padding_share": round(1 - seen["real"] / seen["tokens"], 3), "shape": s,
            "gflops_in_steps": round(flops / train_s / 1e9, 1), "gflops_wall": round(flops / wall / 1e9, 1),
            "share_of_bound_wall": round(flops / wall / 1e9 / bound_gflops, 3)}


def rollout_flops(stats: dict, s: dict, ctx: int) -> float:
    """The weights' multiplies for every prefilled and generated token, and attention over ``ctx / 2`` columns a token
    (``ctx``: the context budget; an upper bound, so the FLOP/s it gives is one too)."""
    tokens = stats["prefill_tokens"] + stats["new_tokens"]
    return 2 * s["matmul_params"] * tokens + 4 * s["layers"] * s["width"] * ctx / 2 * tokens


class EnvClock:
    """Seconds inside an env class's ``_step`` and ``_reset`` (every instance)."""

    def __init__(self, cls):
        self.s = {"step": 0.0, "reset": 0.0}
        self.cls, self.real = cls, {n: getattr(cls, "_" + n) for n in self.s}
        for name, inner in self.real.items():
            def timed(env, *a, _inner=inner, _name=name, **kw):
                t0 = time.perf_counter()
                try:
                    return _inner(env, *a, **kw)
                finally:
                    self.s[_name] += time.perf_counter() - t0

            setattr(cls, "_" + name, timed)

    def close(self) -> None:
        for name, inner in self.real.items():
            setattr(self.cls, "_" + name, inner)


def iteration_profile(run: RunLayout, seed: int, bound_gflops: float) -> dict:
    """IPR iteration 1's exploration and Monte Carlo scoring, as the run did them (no MC cache). ``outcome_digest``:
    a hash of the explored actions and of the MC estimates, to compare engine versions by."""
    import hashlib
    import tempfile

    from iprkit.config import from_dict
    from iprkit.envs.textworld_env import TextWorldEnv
    from iprkit.explore import branches_by_task, explore, score_requests
    from iprkit.loop import Runner
    from iprkit.mc import MCCache, score
    from iprkit.settings import RunSettings
    from iprkit.trajectory import load_trajectories

    cfg = from_dict(RunSettings, json.loads(run.config.read_text()))
    runner = Runner(cfg, tempfile.mkdtemp(), progress=False)
    runner.layout = run  # read the finished run's experts and exploration (the runner writes nothing here)
    chosen, model = runner.explore_set(seed, 1), run.model(seed, "sft", 0)
    reqs = score_requests(chosen, branches_by_task(load_trajectories(run.iteration(seed, "ipr", 1).explore)),
                          cfg.mc.score_expert, cfg.mc.score_same_action)
    warm = runner.env
    warm.reset(chosen[0].task_id)  # TextWorld's one-off parse, before the clock
    out = {}
    for stage in ("explore", "score"):
        engine = runner.engine(model, runner.rollout_seed(seed, 1, stage))
        timer, envs = Timer(engine.backend.model), EnvClock(TextWorldEnv)
        t0 = time.perf_counter()
        if stage == "explore":
            got = explore(engine, chosen, every_step=True, progress=False)
            n, outcome = len(got), [t.actions for t in got]
        else:
            cache = MCCache(Path(tempfile.mkdtemp()) / "mc.jsonl")
            ests, counts = score(engine, cache, "bench", runner.env_id, [r for r, _ in reqs], cfg.mc, progress=False)
            n, outcome = counts["rollouts"], [round(e.mean, 9) for e in ests]
        wall = time.perf_counter() - t0
        envs.close()
        st, s = engine.backend.stats, shape(engine.backend.model)
        engine.close()
        flops = rollout_flops(st, s, cfg.generation.max_context or 2048)
        out[stage] = {"episodes": n, "wall_s": round(wall, 2), "forward_s": round(timer.seconds, 2),
                      "env_s": round(envs.s["step"] + envs.s["reset"], 2), "forward_calls": timer.calls,
                      "prefill_tokens": st["prefill_tokens"], "new_tokens": st["new_tokens"],
                      "generated_tokens_per_s": round(st["new_tokens"] / wall, 1),
                      "outcome_digest": hashlib.sha1(json.dumps(outcome).encode()).hexdigest()[:12],
                      "gflops_wall": round(flops / wall / 1e9, 1),
                      "share_of_bound_wall": round(flops / wall / 1e9 / bound_gflops, 3)}
    runner.close()
    both = [out["explore"], out["score"]]
    wall = sum(r["wall_s"] for r in both)
    gflop = sum(r["gflops_wall"] * r["wall_s"] for r in both)
    out["both"] = {"wall_s": round(wall, 2), "gflops_wall": round(gflop / wall, 1),
                   "share_of_bound_wall": round(gflop / wall / bound_gflops, 3)}
    return out


def rollout_profile(run: RunLayout, episodes: int, bound_gflops: float) -> dict:
    from iprkit.backends import HFBackend
    from iprkit.config import from_dict
    from iprkit.envs import make_env
    from iprkit.envs.textworld_env import TextWorldEnv
    from iprkit.models import load_model
    from iprkit.presets import RUN_PRESETS
    from iprkit.rollout import EpisodeSpec, RolloutEngine
    from iprkit.settings import GenerationSettings

    model, tok = load_model(run.model(0, "sft", 0))
    timer = Timer(model)
    gen = from_dict(GenerationSettings, RUN_PRESETS["demo"]["generation"])
    backend = HFBackend(model, tok, gen)
    engine = RolloutEngine(backend, lambda: make_env("textworld", **RUN_PRESETS["demo"]["env_kwargs"]),
                           max_live=gen.batch_size)
    warm = make_env("textworld", **RUN_PRESETS["demo"]["env_kwargs"])
    ids = warm.task_ids("test")[:episodes]
    warm.reset(warm.task_ids("train")[0])  # TextWorld's one-off work in a process (its game logic parsed, about 1 s)
    warm.close()                           # before the clock, as the model's loading is
    gen_s = [0.0]
    real_generate = backend.generate

    def generate(*a, **kw):
        t0 = time.perf_counter()
        try:
            return real_generate(*a, **kw)
        finally:
            gen_s[0] += time.perf_counter() - t0

    backend.generate = generate
    envs = EnvClock(TextWorldEnv)
    t0 = time.perf_counter()
    with torch.no_grad():
        trajs = engine.run([EpisodeSpec(t) for t in ids], progress=False)
    wall = time.perf_counter() - t0
    envs.close()
    env_s = envs.s
    engine.close()
    st, s = backend.stats, shape(model)
    flops = rollout_flops(st, s, gen.max_context)
    return {"episodes": episodes, "wall_s": round(wall, 2), "forward_s": round(timer.seconds, 2),
            "generate_other_s": round(gen_s[0] - timer.seconds, 2), "env_step_s": round(env_s["step"], 2),
            "env_reset_s": round(env_s["reset"], 2),
            "engine_other_s": round(wall - gen_s[0] - env_s["step"] - env_s["reset"], 2),
            "forward_calls": timer.calls, "prefill_tokens": st["prefill_tokens"], "new_tokens": st["new_tokens"],
            "reused_tokens": st["reused_tokens"], "generated_tokens_per_s": round(st["new_tokens"] / wall, 1),
            "success": sum(t.success for t in trajs), "shape": s,
            "gflops_in_forward": round(flops / timer.seconds / 1e9, 1), "gflops_wall": round(flops / wall / 1e9, 1),
            "share_of_bound_wall": round(flops / wall / 1e9 / bound_gflops, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a finished demo run (default: make demo's)")
    ap.add_argument("--sft-steps", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="roofline")
    ap.add_argument("--iteration", action="store_true", help="also profile IPR iteration 1's exploration and MC scoring")
    ap.add_argument("--skip-sft", action="store_true", help="rollouts only")
    args = ap.parse_args()
    run = RunLayout(args.run) if args.run else finished_demo_run()
    if run is None or not run.model(0, "sft", 0).exists():
        sys.exit("roofline: no finished demo run; run `make demo` or pass --run DIR (a run with seed0's SFT model).")
    torch.set_num_threads(args.threads)
    b = bound(args.threads)
    roll = rollout_profile(run, args.episodes, b["gflops"])
    sft = None if args.skip_sft else sft_profile(run, args.sft_steps, b["gflops"])
    it = iteration_profile(run, 0, b["gflops"]) if args.iteration else None
    result = {"threads": args.threads, "bound": b, "sft": sft, "rollouts": roll, "iteration": it}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"bound: {b['gflops']} GFLOP/s (fp32 torch.mm, {args.threads} threads; by size {b['by_size']}); "
          f"memory read {b['read_gb_per_s']} GB/s\n")
    print("| stage | wall s | model forward s | backward s | rest of generate s | env s | other s | GFLOP/s (wall) | share of bound |")
    print("|---|---|---|---|---|---|---|---|---|")
    if sft:
        print(f"| SFT, {sft['steps']} steps (padding {sft['padding_share']:.0%}) | {sft['wall_s']} | {sft['forward_s']} | "
              f"{sft['backward_s']} | - | - | {sft['other_s']} | {sft['gflops_wall']} | {sft['share_of_bound_wall']:.1%} |")
    print(f"| rollouts, {roll['episodes']} greedy episodes ({roll['generated_tokens_per_s']} gen tok/s) | "
          f"{roll['wall_s']} | {roll['forward_s']} | - | {roll['generate_other_s']} | "
          f"{roll['env_step_s'] + roll['env_reset_s']:.2f} | {roll['engine_other_s']} | {roll['gflops_wall']} | "
          f"{roll['share_of_bound_wall']:.1%} |")
    for stage, r in (it or {}).items():
        if stage != "both":
            print(f"| IPR iteration 1 {stage}, {r['episodes']} episodes ({r['generated_tokens_per_s']} gen tok/s) | "
                  f"{r['wall_s']} | {r['forward_s']} | - | - | {r['env_s']} | - | {r['gflops_wall']} | "
                  f"{r['share_of_bound_wall']:.1%} |")
    if it:
        print(f"| IPR iteration 1, both | {it['both']['wall_s']} | - | - | - | - | - | {it['both']['gflops_wall']} | "
              f"{it['both']['share_of_bound_wall']:.1%} |")
    print(f"\nwrote {RESULTS / (args.name + '.json')}")


if __name__ == "__main__":
    main()
