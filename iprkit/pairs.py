"""Contrastive pairs: IPR's step-level pairs and ETO's outcome-level pairs.

Inputs (all from earlier stages, nothing recomputed here):
- the expert trajectory of each task, with the MC step reward of each expert step;
- for each step t, the agent's exploration branching at t (its step plus its
  continuation, with the continuation's final reward) and the MC step reward of the
  agent's step.

Step pair at t: the expert side is chosen iff it beats the agent on the final reward AND
on the MC step reward, each by its margin; the agent side is chosen on the reverse;
otherwise no pair. ``entire`` mode (the paper's) makes chosen/rejected the step plus its
continuation (multi-turn; observation turns are masked out of the loss by the trainer);
``single-step`` mode the one action. Outcome pairs: the t = 0 full agent rollout against the
expert, margin on final reward, ties dropped.
"""

from iprkit.settings import PairSettings
from iprkit.trajectory import Trajectory


def step_winner(expert_final: float, agent_final: float, expert_mc: float, agent_mc: float,
                final_margin: float = 0.01, step_margin: float = 0.01) -> str | None:
    """``expert``, ``agent`` or None: the side that wins on both rewards by the margins."""
    if expert_final > agent_final + final_margin and expert_mc > agent_mc + step_margin:
        return "expert"
    if agent_final > expert_final + final_margin and agent_mc > expert_mc + step_margin:
        return "agent"
    return None


def outcome_winner(expert_final: float, agent_final: float, margin: float = 0.01) -> str | None:
    if expert_final > agent_final + margin:
        return "expert"
    if agent_final > expert_final + margin:
        return "agent"
    return None


def _prompt(traj: Trajectory, t: int) -> list[dict]:
    """Messages up to (and including) the observation before step t."""
    return traj.messages()[: 1 + 2 * t] if t else traj.messages()[:1]


def _completion(traj: Trajectory, t: int, mode: str) -> list[dict]:
    """Step t (and, in ``entire`` mode, every later turn) as messages."""
    msgs = traj.messages()[1 + 2 * t:]
    return msgs[:1] if mode == "single-step" else msgs


def build_pairs(expert: Trajectory, branches: dict[int, Trajectory], expert_mc: dict[int, float],
                agent_mc: dict[int, float], cfg: PairSettings) -> tuple[list[dict], list[dict]]:
    """Pairs of one task, and one comparison row per step (for stats and the widgets).

    ``branches[t]`` is the agent's trajectory that replayed the expert's first t steps then
    acted; ``expert_mc[t]``/``agent_mc[t]`` are the MC step rewards of the expert's and the
    agent's action at t."""
    pairs, rows = [], []
    e_final = float(expert.final_reward or 0.0)
    for t, branch in sorted(branches.items()):
        if t >= len(expert.steps) or len(branch.steps) <= t:
            continue
        a_final = float(branch.final_reward or 0.0)
        row = {"task_id": expert.task_id, "step": t, "expert_final": e_final, "agent_final": a_final,
               "expert_mc": expert_mc.get(t), "agent_mc": agent_mc.get(t), "expert_action": expert.steps[t].action,
               "agent_action": branch.steps[t].action, "same_action": expert.steps[t].action == branch.steps[t].action,
               "step_pair": None, "outcome_pair": None}
        if cfg.step_pairs and not row["same_action"] and t in expert_mc and t in agent_mc:
            win = step_winner(e_final, a_final, expert_mc[t], agent_mc[t], cfg.final_margin, cfg.step_margin)
            if win:
                chosen, rejected = (expert, branch) if win == "expert" else (branch, expert)
                pairs.append({"kind": "step", "task_id": expert.task_id, "step": t, "winner": win,
                              "prompt": _prompt(expert, t), "chosen": _completion(chosen, t, cfg.mode),
                              "rejected": _completion(rejected, t, cfg.mode),
                              "expert_final": e_final, "agent_final": a_final,
                              "expert_mc": expert_mc[t], "agent_mc": agent_mc[t]})
                row["step_pair"] = win
        if cfg.outcome_pairs and t == 0:
            win = outcome_winner(e_final, a_final, cfg.final_margin)
            if win:
                chosen, rejected = (expert, branch) if win == "expert" else (branch, expert)
                pairs.append({"kind": "outcome", "task_id": expert.task_id, "step": 0, "winner": win,
                              "prompt": _prompt(expert, 0), "chosen": _completion(chosen, 0, "entire"),
                              "rejected": _completion(rejected, 0, "entire"),
                              "expert_final": e_final, "agent_final": a_final,
                              "expert_mc": expert_mc.get(0), "agent_mc": agent_mc.get(0)})
                row["outcome_pair"] = win
        rows.append(row)
    return pairs, rows


def pair_stats(pairs: list[dict], rows: list[dict]) -> dict:
    """Steps compared, pairs by kind, agent-won against expert-won."""
    by = lambda kind, win: sum(p["kind"] == kind and p["winner"] == win for p in pairs)
    return {"steps_compared": len(rows), "same_action_steps": sum(r["same_action"] for r in rows),
            "step_pairs": sum(p["kind"] == "step" for p in pairs), "outcome_pairs": sum(p["kind"] == "outcome" for p in pairs),
            "step_expert_won": by("step", "expert"), "step_agent_won": by("step", "agent"),
            "outcome_expert_won": by("outcome", "expert"), "outcome_agent_won": by("outcome", "agent")}
