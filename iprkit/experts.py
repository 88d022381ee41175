"""Expert trajectories from each env's gold path, with short template thoughts.

Each expert action is replayed in the real env, so every trajectory carries the
observations, rewards and outcome the env actually produced. A task whose gold path
fails to replay (or raises) is recorded as such, never stops the batch.
"""

from typing import Iterable

from tqdm.auto import tqdm

from iprkit.envs.base import Env
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


def expert_trajectories(env: Env, task_ids: Iterable[str], progress: bool = True) -> tuple[list[Trajectory], list[dict]]:
    """Expert trajectories for many tasks; returns (trajectories, failures). A task that
    raises is reported in ``failures`` (task id and error) and the batch goes on."""
    trajs, failures = [], []
    task_ids = list(task_ids)
    for t in tqdm(task_ids, desc=f"{env.name}: expert replay", disable=not progress):
        try:
            trajs.append(expert_trajectory(env, t))
        except Exception as e:  # one bad episode never stops a batch
            failures.append({"task_id": t, "error": f"{type(e).__name__}: {e}"})
    return trajs, failures


def verify_experts(env: Env, trajs: list[Trajectory], progress: bool = True) -> tuple[list[Trajectory], list[dict]]:
    """Replay given expert trajectories (e.g. imported data) in the env. Returns the ones that
    reproduce, re-recorded with the env's own observations and rewards, and one failure row per
    task that does not (unknown task, an action that raises, or no success at the end)."""
    ok, failures = [], []
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
