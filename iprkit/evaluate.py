"""Evaluation: greedy episodes on a split, summarised and saved per task.

Metrics: average final reward, success rate, average steps, invalid-action rate (model
turns with no ``Action:`` line), and how often the context budget dropped turns.
ALFWorld's seen and unseen splits are evaluated and reported apart.
"""

import random
from typing import Callable

from iprkit.progress import tqdm

from iprkit.envs.base import Env
from iprkit.io import write_json, write_jsonl
from iprkit.layout import EvalPaths
from iprkit.rollout import EpisodeSpec, RolloutEngine
from iprkit.trajectory import Step, Trajectory


def summarize(trajs: list[Trajectory]) -> dict:
    """Aggregate metrics of finished episodes."""
    n = len(trajs)
    steps = sum(len(t.steps) for t in trajs)
    invalid = sum(not s.valid for t in trajs for s in t.steps)
    won = [t for t in trajs if t.success]
    return {"episodes": n,
            "avg_reward": sum(t.final_reward or 0.0 for t in trajs) / max(1, n),
            "success_rate": len(won) / max(1, n),
            "avg_steps": steps / max(1, n),
            "avg_steps_to_success": sum(len(t.steps) for t in won) / max(1, len(won)) if won else None,
            "invalid_action_rate": invalid / max(1, steps)}


def per_task_rows(trajs: list[Trajectory]) -> list[dict]:
    return [{"task_id": t.task_id, "final_reward": t.final_reward, "success": t.success, "steps": len(t.steps),
             "invalid_steps": sum(not s.valid for s in t.steps), "actions": t.actions} for t in trajs]


def evaluate_model(backend, env_factory: Callable[[], Env], task_ids: list[str], seed: int = 0,
                   max_live: int = 64, progress: bool = True, desc: str = "eval") -> tuple[dict, list[Trajectory]]:
    """Greedy episodes of ``task_ids``; returns (metrics, trajectories)."""
    engine = RolloutEngine(backend, env_factory, temperature=0.0, seed=seed, max_live=max_live)
    try:
        trajs = engine.run([EpisodeSpec(t) for t in task_ids], desc=desc, progress=progress)
    finally:
        engine.close()
    metrics = summarize(trajs)
    metrics["context_drops"] = backend.stats["context_drops"]
    return metrics, trajs


def random_agent(env: Env, task_ids: list[str], seed: int = 0, progress: bool = True) -> tuple[dict, list[Trajectory]]:
    """Baseline: a uniformly random admissible action each step (TextWorld, ALFWorld)."""
    rng = random.Random(seed)
    trajs = []
    for t in tqdm(task_ids, desc="random agent", disable=not progress, leave=False):
        instruction, obs = env.reset(t)
        steps = []
        while not env.done:
            a = rng.choice(sorted(env.admissible_commands or ["look"]))
            r = env.step(a)
            steps.append(Step(action=a, observation=r.observation, reward=r.reward, done=r.done))
        trajs.append(Trajectory(env=env.name, task_id=t, instruction=instruction, observation=obs, steps=steps,
                                final_reward=env.final_reward(), success=env.success(), source="random"))
    return summarize(trajs), trajs


def save_eval(paths: EvalPaths, split: str, metrics: dict, trajs: list[Trajectory]) -> None:
    """The split's metrics and one row per task, where ``paths`` (an ``eval/`` folder) puts them."""
    write_jsonl(paths.tasks(split), per_task_rows(trajs))
    write_json(paths.metrics(split), metrics)
