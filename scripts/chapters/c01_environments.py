"""Chapter 1: environments and expert trajectories."""

CELLS = [
    ("md", """
# 1. Environments and expert trajectories

## What this stage does, and why

IPR learns from an expert: one successful trajectory per training task, written as ReAct turns

```
Thought: <why>
Action: <what>
```

after the task's instruction and first observation, each action answered by the environment's observation. SFT
imitates these turns (chapter 2); later, every expert trajectory is a path the agent explores *along* (chapter 3).
The paper takes them from its environments' released data (WebShop, InterCode-SQL, ALFWorld); the kit replays each
gold path in the real environment first and keeps only those that reach success, so no trajectory is trusted on
faith.
"""),
    ("md", """
## Where it lives in the kit

- `iprkit/envs/`: one adapter per environment behind one protocol (`envs/base.py`: `reset`, `step`, `expert`,
  `final_reward`, `success`, splits). TextWorld (games generated offline from seeds, cached), ALFWorld, InterCode-SQL
  on a real MariaDB server; others as plug-ins. `iprkit envs` lists each env's options.
- `iprkit/experts.py`: gold paths replayed, thoughts added (TextWorld's `thoughts=quote` quotes the task sentence each
  action carries out).
- Settings (`RunSettings`): `env`, `env_kwargs` (for TextWorld: `preset`, `n_train`, `n_test`, `max_steps`),
  `n_experts` (SFT tasks), `experts_file` (your own trajectories, or the paper's release file).

## Run it

One task, as the agent sees it:
"""),
    ("code", """
from iprkit.envs import make_env

env = make_env(cfg.env, **cfg.env_kwargs)
task = env.task_ids(cfg.train_split)[0]
instruction, obs = env.reset(task)
print(instruction, "\\n\\n", obs)
"""),
    ("md", """
The experts stage replays every gold path (a few seconds per hundred TextWorld games). Here is the first expert
trajectory, turn by turn:
"""),
    ("code", """
from iprkit.trajectory import load_trajectories

run_until("experts")
experts = load_trajectories(layout.experts(cfg.train_split))
t = experts[0]
for s in t.steps:
    print(f"Thought: {s.thought}\\nAction: {s.action}\\n  -> {s.observation[:200]}\\n")
"""),
    ("md", """
## How to read it

Each block is one turn: the thought, the action the environment parsed, and (after the arrow) its observation.
The last observation of a successful trajectory is the win. The replay report below counts how many gold paths
reached success: anything below 100% is a gold path the environment does not accept (a version change, a typo in
a release file) and is listed in `experts/replay_report.json`, never silently dropped.
"""),
    ("code", """
report = json.loads(layout.replay_report.read_text())
lengths = [len(t.steps) for t in experts]
print(f"{report['replayed_to_success']} of {report['tasks']} gold paths replayed to success; "
      f"expert steps: min {min(lengths)}, mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")
"""),
    ("md", """
## What to try

- Another family: `overrides = ["env_kwargs.preset=medium"]` (longer quests; the step limit `max_steps` must fit the
  longest gold path, or evaluation warns that no agent can win those games).
- Another env: `overrides = ["env=alfworld"]` (needs the ALFWorld data) or your own plug-in.

## Pitfalls

- A gold path longer than the step limit can never be won: the kit refuses such experts with the numbers.
- The generated TextWorld games score only the win: reward equals success here (see chapter 0).
"""),
    ("code", """
write_metrics({"env": cfg.env, "tasks": report["tasks"], "replayed_to_success": report["replayed_to_success"],
               "replay_success_rate": report["replayed_to_success"] / max(1, report["tasks"]),
               "avg_expert_steps": sum(lengths) / len(lengths)})
"""),
]
