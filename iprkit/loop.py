"""The IPR loop and the main job: SFT, then K iterations of explore, score, pair,
train, evaluate, for every method and seed, in one run directory.

    iprkit run --preset demo --out runs/demo

The job is a plan of stages (:meth:`Runner.plan`), run in order by a
:class:`~iprkit.stages.StageRunner` (finished stages are skipped, so a rerun resumes;
every stage is timed; ``stop_after`` ends the run cleanly after a stage). Data flows one
way, through the artifacts :class:`~iprkit.layout.RunLayout` names:

    experts -> seed<S>/sft -> eval
            -> for each method, iteration k:  explore -> score -> pairs -> train -> eval
    -> results.json / results.md / metrics.json

Where the work runs is a setting, not a different loop: rollouts in this process or on LLM
servers (``server``, :mod:`iprkit.server`), the rollout stages in one process or K workers
(``workers``, :mod:`iprkit.shard`), training in one process or several (``train``).
"""

import shutil
from contextlib import contextmanager
from dataclasses import asdict
from functools import cached_property
from itertools import groupby
from pathlib import Path

from iprkit.config import save_run_config
from iprkit.envs import env_class, env_factory, make_env, options
from iprkit.errors import IprkitError
from iprkit.io import RunLock, atomic_write_text, remove_stale_temps, read_json, read_jsonl, write_json, write_jsonl
from iprkit.layout import EXPLORED, RunLayout
from iprkit.models import free_gpu_memory
from iprkit.release import import_sft, is_release_file, read_items, release_preamble
from iprkit.results import flat_metrics, format_mc_counts, format_table, results_table
from iprkit.settings import METHODS, RunSettings
from iprkit.stats import compare, format_paired
from iprkit.stages import Stage, StageRunner, StopRun, Work, staged_dir
from iprkit.trajectory import Trajectory, load_trajectories, save_trajectories

__all__ = ["Runner", "RunSettings", "StopRun"]


def check_run(cfg: RunSettings) -> None:
    """Everything about a run that can be checked before any work: the env and its options and splits, and
    the files the settings name (``sft_model`` for every seed, ``experts_file``, a scorer folder)."""
    import inspect

    cls = env_class(cfg.env)
    try:
        inspect.signature(cls).bind(**cfg.env_kwargs)
    except TypeError as e:
        raise IprkitError(f"env_kwargs: {e} for env {cls.name!r}; its options: {sorted(options(cls))} "
                          "(`iprkit envs` describes them).") from None
    for name, splits in (("train_split", [cfg.train_split]), ("eval_splits", cfg.eval_splits or [])):
        bad = [x for x in splits if x not in cls.splits]
        if bad:
            raise IprkitError(f"{name}: {cls.name} has no split(s) {bad}; its splits: {list(cls.splits)}.")
    if cfg.sft_model:
        for seed in cfg.seeds:
            folder = Path(cfg.sft_model.format(seed=seed))
            if not (folder / "config.json").exists():  # a Hugging Face model folder
                raise IprkitError(f"sft_model={cfg.sft_model!r}: {folder} (seed {seed}) is not a model folder (no "
                                  "config.json); give the folder `iprkit sft` or a run's SFT stage wrote as model/, "
                                  "or unset sft_model to train one.")
    if cfg.experts_file and not Path(cfg.experts_file).is_file():
        raise IprkitError(f"experts_file={cfg.experts_file!r}: no such file.")
    if cfg.train.accelerate_config and not Path(cfg.train.accelerate_config).is_file():
        raise IprkitError(f"train.accelerate_config={cfg.train.accelerate_config!r}: no such file (examples: "
                          "configs/accelerate/).")
    if cfg.server.backend == "server" and cfg.server.launch:
        from iprkit.serving import check_launcher

        check_launcher(cfg.server.kind, cfg.server.python)
    elif cfg.server.backend == "server":
        from iprkit.serving import check_urls

        check_urls(cfg.server.urls)
    scorer = cfg.mc.scorer
    if scorer not in ("sft", "current") and (scorer.startswith((".", "/", "~")) or Path(scorer).exists()) \
            and not (Path(scorer).expanduser() / "config.json").exists():
        raise IprkitError(f"mc.scorer={scorer!r}: not a Hugging Face model folder (no config.json); choose sft, "
                          "current or a model folder.")


class Runner:
    """Runs one :class:`RunSettings` in one directory, stage by stage, skipping finished stages."""

    def __init__(self, cfg: RunSettings, out: str | Path, progress: bool = True, stop_after: str | None = None,
                 workers: int = 1, worker: bool = False):
        """``stop_after``: stop cleanly after the stage named so (``ipr/iter1/score``; a group such as
        ``sft`` or ``seed0/sft/eval`` stops after its last stage), as an interruption would; a rerun resumes.
        ``workers``: run exploration, scoring and evaluation in that many processes (:mod:`iprkit.shard`; the
        artifacts are the same for any number). ``worker``: this process is one of them (no lock, no config
        written: the main process holds both)."""
        check_run(cfg)
        if not (isinstance(workers, int) and workers >= 1):
            raise IprkitError(f"--workers {workers!r}: must be a whole number >= 1.")
        self.cfg, self.layout, self.progress, self.workers = cfg, RunLayout(out), progress, workers
        self.env_cls = env_class(cfg.env)
        self.fits: dict = {}  # stage -> its training function (out folder -> None), for processes that train together
        self.stages = StageRunner(self.layout.timings, stop_after, sharder=self._sharded if workers > 1 else None)
        self.stages.check([s.name for s in self.plan()])  # an unknown stop_after fails before any work
        self.lock = None if worker else RunLock(self.layout.lock).acquire()
        try:
            if not worker:  # a worker: the main process did these, and its launcher set its share of the threads
                remove_stale_temps(self.layout.root)  # what a killed run's writes left (we hold the lock)
                if cfg.mc.scorer not in ("sft", "current"):
                    from iprkit.models import load_model

                    load_model(cfg.mc.scorer)  # a scorer that cannot be loaded fails now, not after SFT
                if self.layout.config.exists():  # a rerun: its config must match, refused before any work
                    save_run_config(self.layout.config, cfg)
                if cfg.train.accelerate_config:  # the run keeps the accelerate config its training used
                    atomic_write_text(self.layout.accelerate_config, Path(cfg.train.accelerate_config).read_text())
                import torch

                torch.set_num_threads(cfg.threads)
            kwargs = dict(cfg.env_kwargs)
            self.from_release = bool(cfg.experts_file) and is_release_file(cfg.experts_file)
            if self.from_release and cfg.release_instruction and (p := release_preamble(read_items(cfg.experts_file))):
                kwargs["preamble"] = p  # the paper's prompt, verbatim, in the SFT data and every rollout
            self.env = make_env(cfg.env, **kwargs)
            self.env_factory = env_factory(cfg.env, kwargs, self.env)
            self.env_id = f"{cfg.env}:{sorted(kwargs.items())}"
            if not worker:  # written once the env took its options: a bad value leaves no config to block the fix
                save_run_config(self.layout.config, cfg)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        self.counters: dict[str, dict] = {}

    def _sharded(self, stage: Stage) -> None:
        from iprkit.shard import run_sharded

        run_sharded(self, stage, self.workers)

    # -- the plan ----------------------------------------------------------------------
    def plan(self) -> list[Stage]:
        """Every stage of the job, in order."""
        stages = [self._experts_stage()]
        for seed in self.cfg.seeds:
            stages += [self._sft_stage(seed), *self._eval_stages(seed, "sft", 0)]
            for method in self.cfg.methods:
                for k in range(1, self.cfg.method_iterations(method) + 1):
                    stages += [*self._iteration_stages(seed, method, k), *self._eval_stages(seed, method, k)]
        return stages

    def run(self) -> dict:
        """Run (or resume) the whole job; returns the table, the per-seed curves and this call's counters."""
        self.stages.run_all(self.plan())
        return self.results()

    # -- experts -------------------------------------------------------------------------
    def _experts_stage(self) -> Stage:
        path = self.layout.experts(self.cfg.train_split)
        return Stage("experts", [path], lambda: self._write_experts(path))

    def _write_experts(self, path: Path) -> None:
        from iprkit.experts import expert_trajectories, verify_experts

        n = self.cfg.n_experts
        if self.cfg.explore_held_out:  # a fresh draw per iteration needs a pool of n_explore x iterations
            n += self.cfg.n_explore * (max(1, self.cfg.max_iterations()) if self.cfg.explore_sample == "fresh" else 1)
        if self.from_release:
            trajs, rows = import_sft(self.env, read_items(self.cfg.experts_file)[:n], progress=self.progress)
            ids = [r["task_id"] or f"item {r['index']}" for r in rows]
            failures = [{"task_id": ids[r["index"]], "release_id": r["id"], "error": r["why"]}
                        for r in rows if not r["replayed"]]
        elif self.cfg.experts_file:
            given = load_trajectories(self.cfg.experts_file)[:n]
            ids = [t.task_id for t in given]
            trajs, failures = verify_experts(self.env, given, progress=self.progress)
        else:
            ids = self.env.task_ids(self.cfg.train_split)[:n]
            self.env.prepare(self.cfg.train_split, limit=n)
            trajs, failures = expert_trajectories(self.env, ids, progress=self.progress)
        bad = [t.task_id for t in trajs if not t.success] + [f["task_id"] for f in failures]
        write_json(self.layout.replay_report, {"tasks": len(ids), "replayed_to_success": len(ids) - len(bad),
                                               "skipped": bad, "failures": failures})
        print(f"experts: {len(ids) - len(bad)} of {len(ids)} {self.cfg.train_split} tasks replayed to success"
              + (f"; {len(bad)} skipped (see {self.layout.replay_report})" if bad else ""))
        write_json(self.layout.experts_order, ids)  # task order: SFT takes the first n_experts
        save_trajectories(path, [t for t in trajs if t.success])

    @cached_property
    def expert_sets(self) -> tuple[list[Trajectory], list[Trajectory]]:
        """(SFT set, exploration pool): the first ``n_experts`` tasks and, with ``explore_held_out``, the tasks after
        them; else the SFT set itself. Read once the experts exist; :meth:`explore_set` draws from the pool."""
        experts = load_trajectories(self.layout.experts(self.cfg.train_split))
        order = read_json(self.layout.experts_order) if self.layout.experts_order.exists() else [t.task_id for t in experts]
        sft_ids = set(order[: self.cfg.n_experts])
        sft_set = [t for t in experts if t.task_id in sft_ids]
        if not sft_set:
            raise IprkitError(f"no expert trajectory replayed to success; nothing to train on "
                              f"(see {self.layout.replay_report}).")
        return sft_set, [t for t in experts if t.task_id not in sft_ids] if self.cfg.explore_held_out else sft_set

    def explore_set(self, seed: int, k: int) -> list[Trajectory]:
        """The expert trajectories iteration ``k`` explores along (``explore_sample``): the pool's first ``n_explore``,
        or the k-th slice of one seeded permutation of the pool (no task twice until the pool is used up)."""
        pool = self.expert_sets[1]
        n = min(self.cfg.n_explore or len(pool), len(pool))
        if self.cfg.explore_sample == "fixed" or not pool:
            return pool[:n]
        import random

        order = list(range(len(pool)))
        random.Random(f"explore-sample-{seed}").shuffle(order)
        take = sorted(order[((k - 1) * n + i) % len(pool)] for i in range(n))
        return [pool[i] for i in take]

    def explored_tasks(self, seed: int) -> list[str]:
        """Every task some iteration of the run explores, in pool order: the ``explored`` eval split."""
        seen = {t.task_id for k in range(1, self.cfg.max_iterations() + 1) for t in self.explore_set(seed, k)}
        return [t.task_id for t in self.expert_sets[1] if t.task_id in seen]

    # -- SFT -----------------------------------------------------------------------------
    def _sft_stage(self, seed: int) -> Stage:
        from iprkit.sft import train_sft

        paths = self.layout.sft(seed)
        self.fits[self.layout.stage(seed, "sft", 0)] = lambda out: train_sft(
            self.expert_sets[0], self.cfg.sft, out, seed=seed, progress=self.progress)
        return Stage(self.layout.stage(seed, "sft", 0), [paths.model], lambda: self._train_sft(seed),
                     inputs=[self.layout.experts(self.cfg.train_split)])

    def _train_sft(self, seed: int) -> None:
        paths = self.layout.sft(seed)
        with staged_dir(paths.dir, self.layout.sft_staging(seed)) as tmp:
            if self.cfg.sft_model:
                self._copy_sft_model(Path(self.cfg.sft_model.format(seed=seed)), type(paths)(tmp))
            else:
                self._fit(self.layout.stage(seed, "sft", 0), tmp, prepare=lambda out: self._prepare_sft(seed, out))

    def _prepare_sft(self, seed: int, out: Path) -> None:
        """Before processes train SFT together: the from-scratch model's initial folder, made once."""
        from iprkit.models import is_preset
        from iprkit.sft import prepare_init

        if is_preset(self.cfg.sft.model.name_or_path):
            prepare_init(self.expert_sets[0], self.cfg.sft, type(self.layout.sft(seed))(out), seed)

    def _fit(self, stage: str, out: Path, prepare=None) -> None:
        """Train ``stage`` into ``out``: here, or in ``train.num_processes`` processes (or an accelerate config's)
        that each rebuild the run and call the same function, ``self.fits[stage]`` (see :mod:`iprkit.shard`)."""
        if self.cfg.train.num_processes == 1 and not self.cfg.train.accelerate_config:
            try:
                self.fits[stage](out)
            finally:
                free_gpu_memory()  # a server launched next takes its share of what is free
            return
        from iprkit.shard import run_training

        if prepare is not None:
            prepare(out)
        run_training(self, stage, out)

    @staticmethod
    def _copy_sft_model(src: Path, dst) -> None:
        """``sft_model``: the given model as ``dst.model``, with what `iprkit sft` wrote beside it and its origin."""
        if not (src / "config.json").exists():  # a Hugging Face model folder
            raise IprkitError(f"sft_model: {src} is not a model folder (no config.json); give the folder that "
                              "`iprkit sft` or a run's seed<S>/sft/ wrote as model/, or unset sft_model to train one.")
        shutil.copytree(src, dst.model)
        given = type(dst)(src.parent)
        for a, b in ((given.metrics, dst.metrics), (given.config, dst.config)):
            if a.exists():
                shutil.copy2(a, b)
        write_json(dst.source, {"sft_model": str(src.resolve())})

    # -- evaluation ------------------------------------------------------------------------
    def eval_splits(self) -> list[str]:
        return self.cfg.eval_splits or list(self.env_cls.test_splits)

    def _eval_stages(self, seed: int, method: str, k: int) -> list[Stage]:
        paths = self.layout.eval(seed, method, k)
        explored = [EXPLORED] if self.cfg.eval_explored and self.cfg.max_iterations() > 0 else []
        return [Stage(self.layout.stage(seed, method, k, "eval", split), [paths.metrics(split), paths.tasks(split)],
                      self._eval_work(seed, method, k, split), inputs=[self.layout.model(seed, method, k)])
                for split in self.eval_splits() + explored]

    def _eval_work(self, seed: int, method: str, k: int, split: str) -> Work:
        from iprkit.evaluate import save_eval, summarize
        from iprkit.experts import too_long
        from iprkit.rollout import EpisodeSpec

        def items():
            if split == EXPLORED:  # train tasks, replayed by the experts stage: their games exist
                return [EpisodeSpec(t) for t in self.explored_tasks(seed)]
            self.env.prepare(split, limit=self.cfg.n_eval)
            ids = self.env.task_ids(split)[: self.cfg.n_eval]
            if long := too_long(self.env, {t: self.env.expert(t) for t in ids}):
                print(f"warning: {len(long)} of {len(ids)} {split} tasks have gold paths longer than the step limit "
                      f"max_steps={self.env.max_steps} (longest {max(n for _, n in long)}): no agent can win them; "
                      f"raise env_kwargs.max_steps to compare fairly.")
            return [EpisodeSpec(t) for t in ids]

        tag = self.layout.stage(seed, method, k, "eval", split)

        def do(specs):
            with self.rollouts(self.layout.model(seed, method, k), seed) as engine:
                try:
                    return engine.run(specs, desc=f"eval {split}", progress=self.progress)
                finally:
                    counts = self.counters.setdefault(tag, {}).setdefault("eval", {"context_drops": 0})
                    counts["context_drops"] += engine.backend.stats["context_drops"]  # prompts cut to the context budget

        def write(trajs):
            drops = self.counters.get(tag, {}).get("eval", {}).get("context_drops", 0)
            save_eval(self.layout.eval(seed, method, k), split, {**summarize(trajs), "context_drops": drops}, trajs)

        return Work(items, do, write)

    # -- one iteration -----------------------------------------------------------------------
    def _iteration_stages(self, seed: int, method: str, k: int) -> list[Stage]:
        """Explore along the expert trajectories with the current policy, score, pair, train."""
        m = METHODS[method]
        pcfg, dcfg = m.pair_settings(self.cfg.pairs), m.dpo_settings(self.cfg.dpo)
        it, tag = self.layout.iteration(seed, method, k), self.layout.stage(seed, method, k)
        name = lambda part: f"{tag}/{part}"
        prev = self.layout.model(seed, method, k - 1)
        self.fits[name("train")] = lambda out: self._dpo(seed, it, prev, dcfg, out)
        learned = pcfg.step_pairs and self.cfg.mc.estimator != "mc" and k > 1  # iteration 1: Monte Carlo labels first
        return [
            Stage(name("explore"), [it.explore], self._explore_work(seed, k, prev, it, pcfg.step_pairs), inputs=[prev]),
            *([Stage(name("prm"), [it.prm], lambda: self._train_prm(seed, method, k, it))] if learned else []),
            # only step pairs need step rewards: ETO scores nothing (an empty file, and no timing)
            Stage(name("score"), [it.step_rewards], self._score_work(seed, k, tag, it, prev, learned, pcfg.step_margin)
                  if pcfg.step_pairs else (lambda: write_jsonl(it.step_rewards, [])), timed=pcfg.step_pairs,
                  inputs=[it.explore, *([it.prm] if learned else [])]),
            Stage(name("pairs"), [it.pairs], lambda: self._pairs(self.explore_set(seed, k), it, pcfg),
                  inputs=[it.explore, it.step_rewards]),
            Stage(name("train"), [it.model], lambda: self._train(name("train"), it, prev), inputs=[it.pairs, prev]),
        ]

    def _explore_work(self, seed: int, k: int, prev: Path, it, every_step: bool) -> Work:
        from iprkit.explore import exploration_specs

        def do(specs):
            with self.rollouts(prev, self.rollout_seed(seed, k, "explore")) as engine:
                return engine.run(specs, desc="exploration", progress=self.progress)

        return Work(lambda: exploration_specs(self.explore_set(seed, k), every_step, self.cfg.explore_temperature), do,
                    lambda branches: save_trajectories(it.explore, branches))

    def _train_prm(self, seed: int, method: str, k: int, it) -> None:
        """The step reward model of iteration ``k``: the SFT backbone trained on the Monte Carlo labels of
        iterations 1 .. k-1 of this method and seed."""
        from iprkit.explore import branches_by_task
        from iprkit.prm import label_examples, train_prm

        examples = []
        for j in range(1, k):
            done = self.layout.iteration(seed, method, j)
            rows = [r for _, r in read_jsonl(done.step_rewards)]
            examples += label_examples(self.explore_set(seed, j), branches_by_task(load_trajectories(done.explore)), rows,
                                       self.cfg.mc.n)
        with staged_dir(it.prm) as tmp:
            metrics = train_prm(examples, self.layout.model(seed, "sft", 0), self.cfg.prm, tmp, seed, self.progress)
        free_gpu_memory()
        print(f"{it.prm}: step reward model on {metrics['examples']} Monte Carlo labels; held out: "
              f"MSE {metrics.get('heldout_mse', float('nan')):.4f}, Pearson {metrics.get('heldout_pearson')}")

    def _score_work(self, seed: int, k: int, tag: str, it, prev: Path, learned: bool = False,
                    margin: float = 0.01) -> Work:
        """Step rewards of the expert's and the agent's actions, one row per (task, step, side): Monte Carlo, or
        with ``learned`` the iteration's step reward model (``mc.estimator``: prm, hybrid; :mod:`iprkit.prm`)."""
        from iprkit.explore import branches_by_task, score_requests
        from iprkit.mc import MCCache, fingerprint_model, score

        scorer = {"sft": self.layout.model(seed, "sft", 0), "current": prev}.get(self.cfg.mc.scorer, self.cfg.mc.scorer)

        def items():  # one item per task: rollout reuse shares samples within a task, so a shard holds whole tasks
            branches = branches_by_task(load_trajectories(it.explore))
            reqs = score_requests(self.explore_set(seed, k), branches, self.cfg.mc.score_expert, self.cfg.mc.score_same_action)
            return [list(g) for _, g in groupby(reqs, key=lambda r: r[0].task_id)]

        def do(tasks):
            reqs = [r for task in tasks for r in task]
            scorer_id = fingerprint_model(scorer)

            def mc(requests):  # the scorer's engine (or server) only when some step needs Monte Carlo
                with self.rollouts(scorer, self.rollout_seed(seed, k, "score"), self.cfg.mc.env_snapshots) as engine:
                    return score(engine, MCCache(self.layout.mc_cache(scorer_id)), scorer_id, self.env_id, requests,
                                 self.cfg.mc, self.progress)

            if learned:
                from iprkit.prm import PRM, estimate

                prm = PRM(it.prm, max_length=self.cfg.prm.max_length)
                experts = {e.task_id: e for e in self.explore_set(seed, k)}
                ests, counts = estimate(prm, experts, [r for r, _ in reqs], [t for _, t in reqs], self.cfg.mc, margin, mc)
                del prm
                free_gpu_memory()
            else:
                ests, counts = mc([r for r, _ in reqs])
            self.counters.setdefault(tag, {})["mc"] = counts
            rows = iter([{"task_id": t, "step": s, "side": side, **asdict(e)} for (_, (t, s, side)), e in zip(reqs, ests)])
            return [[next(rows) for _ in task] for task in tasks]

        def write(tasks):
            write_json(it.mc_counts, self.counters.get(tag, {}).get("mc", {}))  # summed over workers when sharded
            write_jsonl(it.step_rewards, [row for task in tasks for row in task])

        return Work(items, do, write)

    def _pairs(self, experts: list[Trajectory], it, pcfg) -> None:
        from iprkit.explore import branches_by_task
        from iprkit.mc import estimator_of
        from iprkit.pairs import build_pairs, pair_stats

        branches = branches_by_task(load_trajectories(it.explore))
        rewards = [r for _, r in read_jsonl(it.step_rewards)]
        mc = {(r["task_id"], r["step"], r["side"]): r["mean"] for r in rewards}
        made_by = {(r["task_id"], r["step"], r["side"]): estimator_of(r) for r in rewards}
        pairs, rows = [], []
        for e in experts:
            em = {s: v for (t, s, side), v in mc.items() if t == e.task_id and side == "expert"}
            am = {s: v for (t, s, side), v in mc.items() if t == e.task_id and side == "agent"}
            p, r = build_pairs(e, branches.get(e.task_id, {}), em, am, pcfg)
            for pair in p:  # which estimator decided a step pair (the pair browser shows it)
                if pair["kind"] == "step":
                    pair["estimators"] = {side: made_by.get((e.task_id, pair["step"], side), "mc") for side in ("expert", "agent")}
            pairs += p
            rows += r
        write_jsonl(it.comparisons, rows)
        write_json(it.pair_stats, pair_stats(pairs, rows))
        write_jsonl(it.pairs, pairs)

    def _train(self, stage: str, it, prev: Path) -> None:
        """DPO (+ NLL) from the previous policy against the reference; no pairs: the policy carries over."""
        from iprkit.train import pairs_on_disk

        with staged_dir(it.model) as tmp:
            if not any(True for _ in read_jsonl(it.pairs)):
                print(f"{it.dir}: no pairs, nothing to learn this iteration; the policy carries over unchanged")
                shutil.rmtree(tmp)
                shutil.copytree(prev, tmp)
                write_json(it.train_metrics, {"pairs": 0, "skipped": True})
                return
            try:
                self._fit(stage, tmp, prepare=lambda out: pairs_on_disk([p for _, p in read_jsonl(it.pairs)],
                                                                        self._pairs_data(out)))
            finally:
                shutil.rmtree(self._pairs_data(tmp), ignore_errors=True)

    @staticmethod
    def _pairs_data(out: Path) -> Path:
        return out.with_name(out.name + ".pairs")

    def _dpo(self, seed: int, it, prev: Path, dcfg, out: Path) -> None:
        from iprkit.sft import is_main_process
        from iprkit.train import train_dpo

        pairs = [p for _, p in read_jsonl(it.pairs)]
        ref = self.layout.model(seed, "sft", 0) if dcfg.reference == "sft" else prev
        data = self._pairs_data(out)
        metrics = train_dpo(pairs, prev, ref, dcfg, out, seed=seed, progress=self.progress,
                            data=data if data.exists() else None, model_cfg=self.cfg.sft.model)
        if is_main_process():
            write_json(it.train_metrics, metrics)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def rollout_seed(seed: int, k: int, stage: str) -> int:
        """The sampling seed of iteration ``k``'s ``explore`` or ``score`` rollouts (evaluation uses ``seed``)."""
        return seed * 1000 + k + (500 if stage == "score" else 0)

    @contextmanager
    def rollouts(self, model_path: Path, seed: int, snapshots: bool = False):
        """:meth:`engine` for one stage's rollouts, closed after (its envs, its server) with its model's memory
        given back (a server started next needs the GPU)."""
        engine = self.engine(model_path, seed, snapshots)
        try:
            yield engine
        finally:
            engine.close()
            engine.backend = None
            free_gpu_memory()

    def engine(self, model_path: Path, seed: int, snapshots: bool = False):
        """A rollout engine over this run's env with the model at ``model_path``: in this process, or on LLM
        servers (``server.backend=server``; a launched server lives as long as the engine)."""
        from iprkit.rollout import RolloutEngine

        if self.cfg.server.backend == "server":
            from iprkit.server import server_backend

            self.layout.servers.mkdir(parents=True, exist_ok=True)
            backend = server_backend(model_path, self.cfg.generation, self.cfg.server, self.cfg.threads, self.layout.servers)
            live = self.cfg.server.concurrency
        else:
            from iprkit.backends import HFBackend
            from iprkit.models import load_model

            backend = HFBackend(*load_model(model_path, self.cfg.sft.model), self.cfg.generation)
            live = self.cfg.generation.batch_size
        return RolloutEngine(backend, self.env_factory, seed=seed, max_live=live, snapshots=snapshots)

    def results(self, write: bool = True) -> dict:
        """The table over every method, iteration and seed (all evaluated); written as results.json/md and metrics.json
        (``write=False``: only returned, e.g. a table over the seeds a long run has finished so far)."""
        layout, results = self.layout, {}
        for seed in self.cfg.seeds:
            base = self._eval_point(seed, "sft", 0)
            for method in self.cfg.methods:
                curve = [{"iteration": 0, **base}]
                for k in range(1, self.cfg.method_iterations(method) + 1):
                    stats = read_json(layout.iteration(seed, method, k).pair_stats)
                    curve.append({"iteration": k, **self._eval_point(seed, method, k),
                                  **{f"pairs_{a}": b for a, b in stats.items()}})
                results.setdefault(method, {})[seed] = curve
        table = results_table(results)
        paired, paired_explored = self._paired(), self._paired(explored=True)
        out = {"table": table, "curves": results, "paired": paired, "paired_explored": paired_explored}
        if not write:
            return out
        write_json(layout.results_json, {"table": table, "curves": results, "paired": paired,
                                         "paired_explored": paired_explored})
        mc_counts = {str(p.dir.relative_to(layout.root)): read_json(p.mc_counts)
                     for _, _, _, p in layout.iteration_dirs() if p.mc_counts.exists()}
        atomic_write_text(layout.results_md, format_table(table) + (
            "\nPaired by (seed, task), each method's last iteration (95% bootstrap CI over tasks; exact McNemar test "
            "on success):\n\n" + format_paired(paired) if paired else "") + (
            "\nThe same on the explored train tasks (what the iterations explored; learning, not generalisation):\n\n"
            + format_paired(paired_explored) if paired_explored else "") + format_mc_counts(mc_counts))
        timings = read_json(layout.timings) if layout.timings.exists() else {}
        write_json(layout.metrics, {"results": table, "curves": results, "paired": paired,
                                    "paired_explored": paired_explored, "mc_counts": mc_counts,
                                    "experts": len(self.expert_sets[0]),
                                    "explored_tasks": {s: len(self.explored_tasks(s)) for s in self.cfg.seeds},
                                    "timings_s": timings})
        return {**out, "counters": self.counters}

    def _paired(self, explored: bool = False) -> list[dict]:
        """Each method's last iteration against SFT, and IPR against ETO, paired by (seed, split, task), on the
        held-out splits (or, ``explored``, on the explored train tasks)."""
        splits = ([EXPLORED] if self.cfg.eval_explored else []) if explored else self.eval_splits()
        if not splits or (explored and self.cfg.max_iterations() == 0):
            return []

        def rows(method: str) -> dict[tuple, dict]:
            k = self.cfg.method_iterations(method)
            out = {}
            for seed in self.cfg.seeds:
                paths = self.layout.eval(seed, method, k)
                for split in splits:
                    out.update({(seed, split, r["task_id"]): {**r, "split": split} for _, r in read_jsonl(paths.tasks(split))})
            return out

        last = {m: f"{m}@{self.cfg.method_iterations(m)}" for m in self.cfg.methods}
        base = rows("sft")  # every run evaluates its SFT model
        out = [compare(last[m], "sft@0", rows(m), base) for m in self.cfg.methods
               if m != "sft" and self.cfg.method_iterations(m) > 0]
        if {"ipr", "eto"} <= set(self.cfg.methods):
            out.append(compare(last["ipr"], last["eto"], rows("ipr"), rows("eto")))
        return out

    def _eval_point(self, seed: int, method: str, k: int) -> dict:
        """One point of a learning curve: success and reward per held-out split and their mean, and on the
        explored tasks (``explored_success``), kept out of the mean."""
        paths = self.layout.eval(seed, method, k)
        point = flat_metrics({split: read_json(paths.metrics(split)) for split in self.eval_splits()})
        if paths.metrics(EXPLORED).exists():
            m = read_json(paths.metrics(EXPLORED))
            point.update({f"{EXPLORED}_success": m["success_rate"], f"{EXPLORED}_reward": m["avg_reward"]})
        return point

    def close(self) -> None:
        self.env.close()
        if self.lock is not None:
            self.lock.release()
