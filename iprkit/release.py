"""The IPR/ETO release format: bring the paper's data into the kit, and write the kit's back.

SFT files are a JSON list (or JSONL) of ``{id, conversations: [{from: human|gpt, value}], game_file?}``:
turn 0 the instruction, turn 1 ``OK``, turn 2 the first observation, then ``Thought/Action`` (gpt)
and ``Observation: ...`` (human) turns. Preference files hold ``{id, prompt, chosen, rejected}``,
each a list of such turns.

    iprkit import --env alfworld --release alfworld_sft.json --out experts.jsonl
    iprkit run ... experts_file=alfworld_sft.json          # the release file directly

Import maps each item to the env's task (:meth:`iprkit.envs.Env.release_task_id`: ALFWorld's
``game_file``, a SQL question, the kit's own ``task_id``), replays its actions in the real env,
and reports per item whether it replayed to success and why not. The release's instruction
(turn 0, the paper's prompt) is kept verbatim by default: it becomes the env's ``preamble``, so
rollouts see the same text as the imported SFT data.
"""

import json
from pathlib import Path

from iprkit.progress import tqdm

from iprkit.envs.base import Env
from iprkit.errors import IprkitError
from iprkit.prompts import parse_agent_turn
from iprkit.trajectory import Step, Trajectory

# -- files -------------------------------------------------------------------------------


def read_items(path: str | Path) -> list[dict]:
    """The items of a release file: a JSON list, or one JSON object per line."""
    path = Path(path)
    if not path.exists():
        raise IprkitError(f"{path}: no such file.")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if data is None:  # JSONL
        data = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise IprkitError(f"{path}:{n}: not valid JSON ({e.msg}); a release file is a JSON list of "
                                      "items or one item per line.") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise IprkitError(f"{path}: expected a list of {{id, conversations}} items (the IPR/ETO release format).")
    return data


def is_release_file(path: str | Path) -> bool:
    """Whether ``path`` holds release items (``conversations`` or ``prompt/chosen/rejected``) rather than the
    kit's trajectory JSONL."""
    try:
        first = read_items(path)[:1]
    except IprkitError:
        return False
    return bool(first) and ("conversations" in first[0] or {"prompt", "chosen", "rejected"} <= set(first[0]))


def is_preference(item: dict) -> bool:
    return {"prompt", "chosen", "rejected"} <= set(item)


# -- SFT items <-> trajectories ------------------------------------------------------------


def to_conversations(traj: Trajectory, id: str | None = None, extra: dict | None = None) -> dict:
    """One trajectory in the release format. The kit's own fields (env, task id, rewards) travel in extra
    keys, which the paper's loaders ignore; ``extra`` adds env-specific ones (ALFWorld's ``game_file``)."""
    conv = [{"from": "human", "value": traj.instruction}, {"from": "gpt", "value": "OK"},
            {"from": "human", "value": traj.observation}]
    for i, s in enumerate(traj.steps):
        conv.append({"from": "gpt", "value": s.turn()})
        if i < len(traj.steps) - 1:
            conv.append({"from": "human", "value": f"Observation: {s.observation}"})
    out = {"id": id or f"{traj.env}_{traj.task_id}", **(extra or {}), "conversations": conv,
           "env": traj.env, "task_id": traj.task_id, "final_reward": traj.final_reward, "success": traj.success}
    if traj.steps:
        out["last_observation"] = traj.steps[-1].observation
    return out


def _turns(item: dict, key: str, where: str) -> list[dict]:
    conv = item.get(key)
    if not isinstance(conv, list):
        raise IprkitError(f"{where}: needs a '{key}' list of {{from, value}} turns (the IPR/ETO format).")
    for k, turn in enumerate(conv):
        if not isinstance(turn, dict) or turn.get("from") not in ("human", "gpt") or not isinstance(turn.get("value"), str):
            raise IprkitError(f"{where}: {key} turn {k} must be {{'from': 'human'|'gpt', 'value': str}}, got {turn!r:.80}.")
    return conv


def from_conversations(item: dict, env: str = "unknown", where: str = "item", task_id: str | None = None) -> Trajectory:
    """A trajectory from one SFT item (inverse of :func:`to_conversations`); ``task_id`` overrides the item's."""
    conv = _turns(item, "conversations", where)
    if not conv or conv[0]["from"] != "human":
        raise IprkitError(f"{where}: turn 0 must be the human instruction.")
    instruction, rest = conv[0]["value"], conv[1:]
    observation = ""
    if len(rest) >= 2 and rest[0]["from"] == "gpt" and rest[0]["value"].strip() == "OK" and rest[1]["from"] == "human":
        observation, rest = rest[1]["value"], rest[2:]
    steps: list[Step] = []
    for turn in rest:
        if turn["from"] == "gpt":
            thought, action = parse_agent_turn(turn["value"])
            steps.append(Step(action=action or "", thought=thought, observation=""))
        elif steps:
            v = turn["value"]
            steps[-1].observation = v[len("Observation: "):] if v.startswith("Observation: ") else v
    if steps and item.get("last_observation") is not None:
        steps[-1].observation = item["last_observation"]
    if steps:
        steps[-1].done = True
    tid = task_id if task_id is not None else str(item.get("task_id", item.get("id", "0")))
    return Trajectory(env=item.get("env", env), task_id=tid, instruction=instruction, observation=observation,
                      steps=steps, final_reward=item.get("final_reward", item.get("reward")),
                      success=item.get("success"), source=item.get("source", "import"),
                      meta={"release_id": item.get("id")})


def release_preamble(items: list[dict]) -> str | None:
    """The instruction every SFT item shares (turn 0), or None when it varies from item to item."""
    firsts = {(it.get("conversations") or [{}])[0].get("value") for it in items if not is_preference(it)}
    return firsts.pop() if len(firsts) == 1 and None not in firsts else None


def import_sft(env: Env, items: list[dict], progress: bool = True) -> tuple[list[Trajectory], list[dict]]:
    """Replay each SFT item in ``env``: (trajectories that replayed to success, re-recorded with the env's own
    observations and rewards, the release's thoughts kept; one report row per item)."""
    from iprkit.experts import verify_experts

    report, parsed = [], []
    for i, item in enumerate(items):
        where = f"item {i} (id {item.get('id')!r})"
        row = {"index": i, "id": item.get("id"), "task_id": None, "replayed": False, "why": ""}
        report.append(row)
        try:
            task = env.release_task_id(item)
            if task is None:
                row["why"] = f"names no {env.name} task (see Env.release_task_id)"
                continue
            row["task_id"] = task
            traj = from_conversations(item, env.name, where, task_id=task)
            if len(traj.steps) > env.max_steps:
                row["why"] = f"{len(traj.steps)} actions, over the step limit max_steps={env.max_steps}"
                continue
            parsed.append((row, traj))
        except IprkitError as e:
            row["why"] = str(e)
    ok = []
    for row, traj in tqdm(parsed, desc=f"{env.name}: replaying release items", disable=not progress):
        good, failures = verify_experts(env, [traj], progress=False, check_limit=False)
        ok += good
        row["replayed"], row["why"] = bool(good), failures[0]["error"] if failures else ""
    return ok, report


def summary(report: list[dict]) -> str:
    """One line, then one line per item that did not replay."""
    good = sum(r["replayed"] for r in report)
    lines = [f"{good}/{len(report)} release items replayed to success"]
    lines += [f"  item {r['index']} (id {r['id']!r}, task {r['task_id']}): {r['why']}" for r in report if not r["replayed"]]
    return "\n".join(lines)


# -- preference items <-> pairs -------------------------------------------------------------


def _messages(turns: list[dict]) -> list[dict]:
    return [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]} for t in turns]


def _turns_of(messages: list[dict]) -> list[dict]:
    return [{"from": "human" if m["role"] == "user" else "gpt", "value": m["content"]} for m in messages]


def pair_from_release(item: dict, where: str = "item") -> dict:
    """One preference item as a kit pair (``prompt``/``chosen``/``rejected`` chat messages, trainable by
    :func:`iprkit.train.train_dpo`)."""
    return {"kind": item.get("kind", "import"), "task_id": str(item.get("task_id", item.get("id"))),
            "prompt": _messages(_turns(item, "prompt", where)), "chosen": _messages(_turns(item, "chosen", where)),
            "rejected": _messages(_turns(item, "rejected", where)), "release_id": item.get("id")}


def pair_to_release(pair: dict, id: str | None = None) -> dict:
    """A kit pair in the release's preference format."""
    return {"id": id or pair.get("release_id") or f"{pair.get('kind', 'pair')}_{pair.get('task_id')}_{pair.get('step', 0)}",
            "prompt": _turns_of(pair["prompt"]), "chosen": _turns_of(pair["chosen"]),
            "rejected": _turns_of(pair["rejected"])}
