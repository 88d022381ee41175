"""Read a run directory back into views for notebooks, widgets and reports.

Nothing here recomputes: it joins what the stages wrote (expert trajectories,
explorations, step rewards, comparisons, pairs, evals) into per-step records.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from iprkit.io import read_json, read_jsonl
from iprkit.layout import RunLayout
from iprkit.mc import estimator_of
from iprkit.trajectory import Trajectory, load_trajectories


@dataclass
class IterationView:
    """One iteration of one method and seed: a row per task, a column per expert step."""

    tasks: list[str]
    steps: int
    expert_mc: list[list[float | None]]
    agent_mc: list[list[float | None]]
    cells: list[list[dict | None]] = field(default_factory=list)
    """Per (task, step): instruction, both actions/thoughts/observations, both estimates with spread and
    rollouts, final rewards, whether the step became a pair."""

    def gap(self) -> list[list[float | None]]:
        return [[None if e is None or a is None else e - a for e, a in zip(er, ar)]
                for er, ar in zip(self.expert_mc, self.agent_mc)]


def load_iteration(run: str | Path, seed: int = 0, method: str = "ipr", k: int = 1, max_tasks: int | None = None) -> IterationView:
    """Join one iteration's artifacts into an :class:`IterationView`."""
    layout = RunLayout(run)
    d = layout.iteration(seed, method, k)
    experts = {t.task_id: t for t in load_trajectories(layout.experts(_train_split(layout)))}
    branches: dict[tuple, Trajectory] = {(b.task_id, int(b.meta["branch"])): b for b in load_trajectories(d.explore)}
    rewards = {(r["task_id"], r["step"], r["side"]): r for _, r in read_jsonl(d.step_rewards)}
    comps = {(r["task_id"], r["step"]): r for _, r in read_jsonl(d.comparisons)} if d.comparisons.exists() else {}
    tasks = sorted({t for t, _ in branches}, key=lambda t: list(experts).index(t) if t in experts else 0)[:max_tasks]
    steps = max((len(experts[t].steps) for t in tasks if t in experts), default=0)
    view = IterationView(tasks=tasks, steps=steps, expert_mc=[], agent_mc=[], cells=[])
    for t in tasks:
        e = experts.get(t)
        erow, arow, crow = [], [], []
        for s in range(steps):
            er, ar, b = rewards.get((t, s, "expert")), rewards.get((t, s, "agent")), branches.get((t, s))
            erow.append(er["mean"] if er else None)
            arow.append(ar["mean"] if ar else None)
            if e is None or s >= len(e.steps) or b is None or len(b.steps) <= s:
                crow.append(None)
                continue
            comp = comps.get((t, s), {})
            crow.append({
                "task_id": t, "step": s, "instruction": e.instruction,
                "observation": e.observation if s == 0 else e.steps[s - 1].observation,
                "expert": {"thought": e.steps[s].thought, "action": e.steps[s].action, "observation": e.steps[s].observation,
                           "final_reward": e.final_reward, "mc": _est(er)},
                "agent": {"thought": b.steps[s].thought, "action": b.steps[s].action, "observation": b.steps[s].observation,
                          "final_reward": b.final_reward, "mc": _est(ar),
                          "continuation": [x.action for x in b.steps[s + 1:]]},
                "pair": comp.get("step_pair"), "outcome_pair": comp.get("outcome_pair"),
            })
        view.expert_mc.append(erow)
        view.agent_mc.append(arow)
        view.cells.append(crow)
    return view


def _train_split(layout: RunLayout) -> str:
    """The split the run's expert trajectories come from (its config says)."""
    return read_json(layout.config).get("train_split", "train") if layout.config.exists() else "train"


def _est(r: dict | None) -> dict | None:
    if not r:
        return None
    return {**{k: r[k] for k in ("mean", "std", "ci_low", "ci_high", "n", "terminal", "rollouts")},
            "estimator": estimator_of(r), "prm": r.get("prm")}


def load_pairs(run: str | Path, seed: int = 0, methods: list[str] | None = None) -> list[dict]:
    """Every pair of a seed, tagged with method and iteration."""
    out, layout = [], RunLayout(run)
    for method in layout.methods(seed):
        if methods and method not in methods:
            continue
        for k in layout.iterations(seed, method):
            if (path := layout.iteration(seed, method, k).pairs).exists():
                out += [{**p, "method": method, "iteration": k} for _, p in read_jsonl(path)]
    return out


def load_results(run: str | Path) -> dict:
    """``results.json`` of a finished run (table and per-seed curves)."""
    return read_json(RunLayout(run).results_json)


def step_curve(view: IterationView) -> dict:
    """Mean MC step reward by step index, expert and agent (the paper's per-step reward curve)."""
    def mean_col(m, s):
        xs = [row[s] for row in m if s < len(row) and row[s] is not None]
        return sum(xs) / len(xs) if xs else None
    return {"step": list(range(view.steps)), "expert": [mean_col(view.expert_mc, s) for s in range(view.steps)],
            "agent": [mean_col(view.agent_mc, s) for s in range(view.steps)]}


def prm_agreement(view: IterationView, margin: float = 0.01) -> dict:
    """Where a step reward model's score and a Monte Carlo estimate exist for the same action (``mc.estimator=hybrid``:
    the steps the model found too close to call, so Monte Carlo ran): per step, how far apart they are, and whether
    the step's verdict (expert better / agent better / neither, at ``margin``) is the same under both. Empty when no
    row has both (pure MC, or ``prm`` alone)."""
    def verdict(e: float, a: float) -> str:
        return "expert" if e > a + margin else "agent" if a > e + margin else "neither"

    by_step: dict[int, dict] = {}
    for row in view.cells:
        for c in row:
            if not c:
                continue
            both = {side: c[side]["mc"] for side in ("expert", "agent")
                    if c[side]["mc"] and c[side]["mc"]["estimator"] == "mc" and c[side]["mc"]["prm"] is not None}
            if not both:
                continue
            d = by_step.setdefault(c["step"], {"step": c["step"], "estimates": 0, "abs_diff": 0.0, "verdicts": 0, "agree": 0})
            for m in both.values():
                d["estimates"] += 1
                d["abs_diff"] += abs(m["prm"] - m["mean"])
            if len(both) == 2:
                e, a = both["expert"], both["agent"]
                d["verdicts"] += 1
                d["agree"] += verdict(e["mean"], a["mean"]) == verdict(e["prm"], a["prm"])
    steps = [{**d, "mean_abs_diff": d.pop("abs_diff") / d["estimates"]} for _, d in sorted(by_step.items())]
    n, v = sum(d["estimates"] for d in steps), sum(d["verdicts"] for d in steps)
    return {"by_step": steps, "estimates": n, "verdicts": v,
            "mean_abs_diff": sum(d["mean_abs_diff"] * d["estimates"] for d in steps) / n if n else None,
            "verdict_agreement": sum(d["agree"] for d in steps) / v if v else None}


def close_calls(view: IterationView, limit: int = 10) -> list[dict]:
    """Steps where the scorer's estimates for the expert's and the agent's (different) actions are closest: where a
    pair hangs on the margin, and more rollouts would decide it. Each: task, row/column in the view, both estimates."""
    out = []
    for r, row in enumerate(view.cells):
        for s, c in enumerate(row):
            e, a = (c or {}).get("expert", {}).get("mc"), (c or {}).get("agent", {}).get("mc")
            if c and e and a and c["expert"]["action"] != c["agent"]["action"]:
                out.append({"task_id": c["task_id"], "step": s, "row": r, "expert": e["mean"], "agent": a["mean"],
                            "gap": e["mean"] - a["mean"], "pair": c.get("pair")})
    return sorted(out, key=lambda x: abs(x["gap"]))[:limit]


def flips(view: IterationView) -> list[dict]:
    """Steps where the step reward and the final reward disagree: the expert's action scored higher but the agent's
    branch ended better, or the reverse. Neither becomes a step pair (both must agree); each is worth a look."""
    out = []
    for r, row in enumerate(view.cells):
        for s, c in enumerate(row):
            e, a = (c or {}).get("expert", {}).get("mc"), (c or {}).get("agent", {}).get("mc")
            if not (c and e and a):
                continue
            step_gap = e["mean"] - a["mean"]
            final_gap = (c["expert"]["final_reward"] or 0.0) - (c["agent"]["final_reward"] or 0.0)
            if step_gap * final_gap < 0:
                out.append({"task_id": c["task_id"], "step": s, "row": r, "step_gap": step_gap, "final_gap": final_gap})
    return out


def fragile_pairs(view: IterationView) -> list[dict]:
    """Step pairs whose two Monte Carlo estimates overlap in their 95% intervals: the chosen side lost about as often
    in its rollouts as the rejected side, and the margin says less than it seems."""
    out = []
    for r, row in enumerate(view.cells):
        for s, c in enumerate(row):
            if not (c and c.get("pair")):
                continue
            win, lose = c[c["pair"]]["mc"], c["agent" if c["pair"] == "expert" else "expert"]["mc"]
            if win and lose and not win["terminal"] and win["ci_low"] <= lose["ci_high"]:
                out.append({"task_id": c["task_id"], "step": s, "row": r, "chosen": c["pair"], "chosen_mc": win["mean"],
                            "chosen_ci": [win["ci_low"], win["ci_high"]], "rejected_mc": lose["mean"],
                            "rejected_ci": [lose["ci_low"], lose["ci_high"]]})
    return out


def changed_tasks(run: str | Path, seed: int, a: tuple[str, int], b: tuple[str, int], split: str = "test") -> dict:
    """Tasks that model ``a`` (method, iteration) won and ``b`` lost (``lost``), and the reverse (``gained``), on one
    eval split, with both agents' actions: what an iteration changed, task by task."""
    layout = RunLayout(run)
    rows = {}
    for key, (method, k) in (("a", a), ("b", b)):
        rows[key] = {r["task_id"]: r for _, r in read_jsonl(layout.eval(seed, method, k).tasks(split))}
    shared = [t for t in rows["a"] if t in rows["b"]]
    pick = lambda won, lost: [{"task_id": t, "won_actions": rows[won][t]["actions"], "lost_actions": rows[lost][t]["actions"]}
                              for t in shared if rows[won][t]["success"] and not rows[lost][t]["success"]]
    return {"lost": pick("a", "b"), "gained": pick("b", "a"), "tasks": len(shared)}


def to_json(view: IterationView) -> str:
    return json.dumps({"tasks": view.tasks, "steps": view.steps, "expert_mc": view.expert_mc, "agent_mc": view.agent_mc,
                       "cells": view.cells})
