"""Exploration along expert trajectories, and the MC requests it gives rise to.

For each expert trajectory and each step t (t = 0 included) the current agent replays
the expert's first t steps, emits its own action, then continues to the end (greedy by
default). The branch keeps the agent's step, its immediate reward and the final reward
of its continuation.
"""

from iprkit.mc import ScoreRequest
from iprkit.rollout import EpisodeSpec, RolloutEngine
from iprkit.trajectory import Trajectory


def exploration_specs(experts: list[Trajectory], every_step: bool = True, temperature: float = 0.0) -> list[EpisodeSpec]:
    """One spec per (expert, t); ``every_step=False`` gives t = 0 only (ETO's full rollouts)."""
    specs = []
    for e in experts:
        for t in range(len(e.steps) if every_step else 1):
            specs.append(EpisodeSpec(e.task_id, prefix=e.steps[:t], temperature=temperature,
                                     meta={"branch": t, "expert_task": e.task_id}))
    return specs


def explore(engine: RolloutEngine, experts: list[Trajectory], every_step: bool = True, temperature: float = 0.0,
            progress: bool = True) -> list[Trajectory]:
    """Run the exploration; each returned trajectory has ``meta['branch'] = t``."""
    return engine.run(exploration_specs(experts, every_step, temperature), desc="exploration", progress=progress)


def branches_by_task(explorations: list[Trajectory]) -> dict[str, dict[int, Trajectory]]:
    out: dict[str, dict[int, Trajectory]] = {}
    for b in explorations:
        out.setdefault(b.task_id, {})[int(b.meta["branch"])] = b
    return out


def score_requests(experts: list[Trajectory], branches: dict[str, dict[int, Trajectory]], score_expert: bool = True,
                   same_action: bool = True):
    """(request, (task_id, t, side)) for every expert action and every agent action at its branch step
    (``same_action=False``: only at steps where the two actions differ).
    A step that ended the episode is terminal: its estimate is the env's reward."""
    out = []
    for e in experts:
        for t, b in sorted(branches.get(e.task_id, {}).items()):
            if t >= len(e.steps) or len(b.steps) <= t:
                continue
            if not same_action and b.steps[t].action == e.steps[t].action:
                continue
            if score_expert:
                out.append((ScoreRequest(e.task_id, e.steps[: t + 1],
                                         float(e.final_reward or 0.0) if e.steps[t].done else None), (e.task_id, t, "expert")))
            out.append((ScoreRequest(e.task_id, b.steps[: t + 1],
                                     float(b.final_reward or 0.0) if b.steps[t].done else None), (e.task_id, t, "agent")))
    return out
