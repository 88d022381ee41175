"""Entity renaming: more expert data for a model trained from scratch.

A tiny model trained from scratch on a few hundred games learns which objects go with
which containers ("the frisbee is in the toolbox") instead of copying names from the
task and the room. Renaming copies each expert trajectory with its entities (objects,
containers, keys, rooms...) consistently swapped for other names *of the same kind*
seen in the training games, in every text of the trajectory (instruction, observations,
thoughts, actions). The agent then has to read names off its context to act.

Only envs that list a task's entities (``Env.entities``; TextWorld does) can be
augmented; the entities travel with each expert trajectory in ``meta["entities"]``.
Evaluation is never augmented: test games are the env's own.
"""

import random
import re
from collections import defaultdict

from iprkit.errors import IprkitError
from iprkit.trajectory import Step, Trajectory


def name_pool(trajs: list[Trajectory]) -> dict[str, list[str]]:
    """Every entity name of the trajectories, by kind, in a fixed order."""
    pool = defaultdict(set)
    for t in trajs:
        for name, kind in t.meta.get("entities", {}).items():
            pool[kind].add(name)
    return {k: sorted(v) for k, v in sorted(pool.items())}


def _case_like(src: str, canonical: str, new: str) -> str:
    """``new`` cased as ``src`` is cased relative to the entity's own name ``canonical``."""
    if src == canonical:
        return new
    if src == canonical[:1].upper() + canonical[1:]:  # sentence start
        return new[:1].upper() + new[1:]
    if src == canonical.title():  # a room's "-= Spare Room =-" header
        return new.title()
    return new.upper() if src.isupper() else new


def rename(traj: Trajectory, mapping: dict[str, str]) -> Trajectory:
    """``traj`` with every whole-word occurrence of each old name (any case) replaced by
    its new name in the same case pattern, and "a"/"an" before it fixed."""
    if not mapping:
        return traj
    lower = {k.lower(): (k, v) for k, v in mapping.items()}
    names = sorted(lower, key=len, reverse=True)  # "Canadian style box" before "box"
    pat = re.compile(r"\b(?:(an?|An?) )?(" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)

    def sub(m: re.Match) -> str:
        new = _case_like(m[2], *lower[m[2].lower()])
        if m[1] is None:
            return new
        art = "an" if new[:1].lower() in "aeiou" else "a"
        return f"{art.capitalize() if m[1][0].isupper() else art} {new}"

    f = lambda s: pat.sub(sub, s) if s else s  # noqa: E731
    steps = [Step(action=f(s.action), observation=f(s.observation), thought=f(s.thought), reward=s.reward,
                  done=s.done, valid=s.valid) for s in traj.steps]
    meta = dict(traj.meta, entities={mapping.get(n, n): k for n, k in traj.meta.get("entities", {}).items()},
                renamed_from=traj.task_id)
    return Trajectory(env=traj.env, task_id=traj.task_id, instruction=f(traj.instruction), observation=f(traj.observation),
                      steps=steps, final_reward=traj.final_reward, success=traj.success, source=traj.source, meta=meta)


def renamed_copies(trajs: list[Trajectory], copies: int, seed: int = 0) -> list[Trajectory]:
    """``copies`` renamed versions of every trajectory (deterministic under ``seed``). Each copy
    draws, for every entity, a different name of the same kind that the trajectory does not use."""
    if copies <= 0:
        return []
    missing = [t.task_id for t in trajs if not t.meta.get("entities")]
    if missing:
        raise IprkitError(
            f"entity renaming needs each trajectory's entities in meta['entities']; {len(missing)} have none "
            f"(first: {missing[0]!r}). Make the experts with `iprkit experts` from an env that lists entities "
            "(TextWorld), or set sft augment_copies=0.")
    pool = name_pool(trajs)
    rng = random.Random(seed)
    out = []
    for _ in range(copies):
        for t in trajs:
            ents = t.meta["entities"]
            taken = {n.lower() for n in ents}
            mapping = {}
            for name, kind in sorted(ents.items()):
                choices = [c for c in pool[kind] if c.lower() not in taken]
                if choices:
                    new = rng.choice(choices)
                    taken.add(new.lower())
                    mapping[name] = new
            out.append(rename(t, mapping))
    return out


def attach_entities(env, trajs: list[Trajectory]) -> list[Trajectory]:
    """Fill ``meta["entities"]`` from the env for trajectories made before it was recorded."""
    for t in trajs:
        if not t.meta.get("entities"):
            ents = env.entities(t.task_id)
            if ents:
                t.meta["entities"] = ents
    return trajs
