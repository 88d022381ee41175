"""Expert trajectories from each env's gold path, with short template thoughts.

Each expert action is replayed in the real env, so every trajectory carries the
observations, rewards and outcome the env actually produced. A task whose gold path
fails to replay (or raises) is recorded as such, never stops the batch.
"""

from typing import Iterable

from iprkit.progress import tqdm

from iprkit.envs.base import Env
from iprkit.errors import IprkitError
from iprkit.trajectory import Step, Trajectory


def expert_trajectory(env: Env, task_id: str) -> Trajectory:
    """Replay the gold path of one task and write a thought for every step."""
    actions = env.expert(task_id)
    instruction, obs = env.reset(task_id)
    seen, steps = f"{instruction}\n{obs}", []
    for a in actions:
        thought = env.expert_thought(a, seen)
        r = env.step(a)
        steps.append(Step(action=a, observation=r.observation, thought=thought, reward=r.reward, done=r.done))
        seen += "\n" + r.observation
        if r.done:
            break
    return Trajectory(env=env.name, task_id=task_id, instruction=instruction, observation=obs, steps=steps,
                      final_reward=env.final_reward(), success=env.success(), source="expert",
                      meta=_meta(env, task_id, gold_length=len(actions)))


def _meta(env: Env, task_id: str, **kw) -> dict:
    ents = env.entities(task_id)
    return dict(kw, entities=ents) if ents else kw


def too_long(env: Env, paths: dict[str, list[str]]) -> list[tuple[str, int]]:
    """(task, length) of the gold paths that do not fit the env's step limit."""
    return [(t, len(a)) for t, a in paths.items() if len(a) > env.max_steps]


def check_step_limit(env: Env, paths: dict[str, list[str]], what: str = "gold paths") -> None:
    """Refuse expert paths longer than the step limit (they could never replay to the end), with the numbers."""
    long = too_long(env, paths)
    if long:
        worst = max(long, key=lambda x: x[1])
        raise IprkitError(f"{env.name}: {len(long)} of {len(paths)} {what} are longer than the step limit "
                          f"max_steps={env.max_steps} (the longest, task {worst[0]}, has {worst[1]} steps). Raise the "
                          f"limit to at least {worst[1]} (env_kwargs.max_steps={worst[1]}, or --env-opt "
                          f"max_steps={worst[1]}), or choose tasks whose gold paths fit.")


def expert_trajectories(env: Env, task_ids: Iterable[str], progress: bool = True) -> tuple[list[Trajectory], list[dict]]:
    """Expert trajectories for many tasks; returns (trajectories, failures). Gold paths longer than the
    env's step limit are refused up front; a task that raises is reported in ``failures`` (task id and
    error) and the batch goes on."""
    trajs, failures = [], []
    task_ids = list(task_ids)
    gold = {}
    for t in task_ids:
        try:
            gold[t] = env.expert(t)
        except Exception:  # noqa: BLE001 - reported with its task below
            continue
    check_step_limit(env, gold)
    for t in tqdm(task_ids, desc=f"{env.name}: expert replay", disable=not progress):
        try:
            trajs.append(expert_trajectory(env, t))
        except Exception as e:  # one bad episode never stops a batch
            failures.append({"task_id": t, "error": f"{type(e).__name__}: {e}"})
    return trajs, failures


def verify_experts(env: Env, trajs: list[Trajectory], progress: bool = True,
                   check_limit: bool = True) -> tuple[list[Trajectory], list[dict]]:
    """Replay given expert trajectories (e.g. imported data) in the env. Returns the ones that
    reproduce, re-recorded with the env's own observations and rewards, and one failure row per
    task that does not (unknown task, an action that raises, or no success at the end)."""
    ok, failures = [], []
    if check_limit:
        check_step_limit(env, {t.task_id: t.actions for t in trajs}, "given expert trajectories")
    for t in tqdm(trajs, desc=f"{env.name}: verifying experts", disable=not progress):
        try:
            instruction, obs, results = env.replay(t.task_id, t.actions)
        except Exception as e:  # one bad trajectory never stops the batch
            failures.append({"task_id": t.task_id, "error": f"{type(e).__name__}: {e}"})
            continue
        if not env.success():
            failures.append({"task_id": t.task_id, "error": f"replay ends with final reward {env.final_reward():.2f}, "
                                                            "not success"})
            continue
        steps = [Step(action=s.action, thought=s.thought, observation=r.observation, reward=r.reward, done=r.done)
                 for s, r in zip(t.steps, results)]
        ok.append(Trajectory(env=env.name, task_id=t.task_id, instruction=instruction, observation=obs, steps=steps,
                             final_reward=env.final_reward(), success=True, source=t.source, meta=t.meta))
    return ok, failures
