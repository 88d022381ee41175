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
                      meta={"gold_length": len(actions)})


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
