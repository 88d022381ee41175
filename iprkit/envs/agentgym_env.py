"""AgentGym env servers: any environment served over AgentGym's HTTP protocol, as a kit env.

AgentGym (github.com/WooooDyy/AgentGym) serves each of its environments (TextCraft, WebShop,
ALFWorld, BabyAI, SciWorld, ...) from a FastAPI server with one protocol:

    POST /create {}                     -> {"id": N, "observation": ...}   (a new env instance)
    POST /reset  {"id": N, "data_idx": i} -> {"observation": ..., "done": false, "reward": 0}
    POST /step   {"id": N, "action": a}   -> {"observation": ..., "reward": r, "done": d}
    GET  /observation?id=N, POST /close {"id": N}, and env-specific extras (/available_actions, /commands, ...)

Each adapter instance holds one server-side env (created on first use, closed on ``close``);
task ``<env_name>-<i>`` is the server's data index ``i``. A server that cannot be reached,
does not answer in time, or answers ``{"error": ...}`` raises a clear :class:`IprkitError`
naming the server and the call, so the stage fails and a rerun resumes it.

Experts: AgentGym ships none for TextCraft; :func:`textcraft_plan` derives a gold path from the
crafting commands the first observation lists (799 of the first 800 goals replay to success).
Other AgentGym envs take expert trajectories from a file (``experts_file=``).

WebShop (the paper's third environment) is served the same way (``agentenv-webshop``); its
product data cannot be had here. With the data and its server running: ``iprkit run
env=agentgym env_kwargs.url=http://127.0.0.1:PORT env_kwargs.env_name=webshop
experts_file=<the paper's webshop_sft.json>`` (the release items' ids name the data indices).
"""

import http.client
import json
import math
import re
import urllib.error
import urllib.request
from urllib.parse import urlencode

from iprkit.envs.base import Env, check_disjoint, ranged_index, ranged_tasks
from iprkit.errors import IprkitError

PREAMBLES = {
    "textcraft": ("You are in a Minecraft crafting world. Each turn, think, then give one action: `get N item` "
                  "(a base item), `craft N item using a input, b input` (exactly as a crafting command lists "
                  "it), or `inventory`. "),
}


class AgentGymEnv(Env):
    """An environment behind an AgentGym env server (HTTP)."""

    name = "agentgym"
    thread_safe = True  # each copy has its own HTTP requests and server-side env id
    splits = ("train", "test")
    test_splits = ("test",)
    option_docs = {
        "url": "base URL of the AgentGym env server, e.g. http://127.0.0.1:36001 (required)",
        "env_name": "which AgentGym env the server runs (names task ids; textcraft has a built-in expert planner)",
        "n_train": "train tasks: data indices train_start ..",
        "n_test": "test tasks: data indices test_start ..",
        "train_start": "first train data index",
        "test_start": "first test data index (the two ranges may not overlap)",
        "max_steps": "step limit of an episode",
        "timeout_s": "seconds to wait for one answer of the server",
        "actions_path": "the server's extra that lists the actions available now (e.g. /available_actions; TextCraft: "
                        "/commands), read after every reset and step into admissible_commands (None: not read)",
        "preamble": "text in place of the instruction's opening (e.g. the paper's prompt from its release)",
    }
    preamble = ""
    """Per env name (see ``PREAMBLES``), set when the env is built."""

    def __init__(self, url: str | None = None, env_name: str = "textcraft", n_train: int = 100, n_test: int = 50,
                 train_start: int = 50, test_start: int = 0, max_steps: int = 30, timeout_s: float = 30.0,
                 actions_path: str | None = None, preamble: str | None = None):
        super().__init__(preamble)
        if not url or not re.match(r"^https?://[^/]+", str(url)):
            raise IprkitError(f"agentgym: url={url!r}; give the env server's base URL, e.g. env_kwargs.url="
                              "http://127.0.0.1:36001 (start the server first: see iprkit.envs.agentgym_env).")
        check_disjoint("agentgym", "indices", (train_start, n_train), (test_start, n_test))
        self.url, self.env_name, self.timeout_s, self.max_steps = str(url).rstrip("/"), env_name, timeout_s, max_steps
        self.actions_path = actions_path
        self.n_train, self.n_test, self.train_start, self.test_start = n_train, n_test, train_start, test_start
        self.preamble = PREAMBLES.get(env_name, "")  # what a release's prompt replaces
        self._id: int | None = None
        self._plans: dict[str, list[str]] = {}
        self._score = 0.0

    # -- the protocol -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, query: dict | None = None):
        url = f"{self.url}{path}" + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                out = json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise IprkitError(f"agentgym server at {self.url}: {method} {path} answered HTTP {e.code} "
                              f"({e.read()[:300].decode(errors='replace')}).") from None
        except (OSError, http.client.HTTPException) as e:  # refused, reset, timed out, torn: down or stuck
            reason = getattr(e, "reason", e)
            raise IprkitError(f"agentgym server at {self.url}: {method} {path} got no answer ({reason}); is the "
                              f"server running (and within timeout_s={self.timeout_s})? A rerun resumes the stage.") from None
        except json.JSONDecodeError:
            raise IprkitError(f"agentgym server at {self.url}: {method} {path} did not answer JSON.") from None
        if isinstance(out, dict) and "error" in out:
            raise IprkitError(f"agentgym server at {self.url}: {method} {path} failed on the server: {out['error']}")
        return out

    def _instance(self) -> int:
        if self._id is None:
            out = self._call("POST", "/create", {})
            self._id = out["id"] if isinstance(out, dict) else int(out)
        return self._id

    # -- tasks -----------------------------------------------------------------------------------
    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        start, n = (self.train_start, self.n_train) if split == "train" else (self.test_start, self.n_test)
        return ranged_tasks(self.env_name, start, n)

    def _index(self, task_id: str) -> int:
        return ranged_index("agentgym", self.env_name, task_id)

    def expert(self, task_id: str) -> list[str]:
        self.check_task(task_id)
        if self.env_name != "textcraft":
            raise IprkitError(f"agentgym: no gold paths for {self.env_name!r} (only textcraft has a planner); bring "
                              "expert trajectories with experts_file= (the paper's release format works).")
        if task_id not in self._plans:
            out = self._call("POST", "/reset", {"id": self._instance(), "data_idx": self._index(task_id)})
            self._plans[task_id] = textcraft_plan(out["observation"])
            self._done = True  # the server env was reset outside an episode: a new one must start with reset()
        return list(self._plans[task_id])

    # -- episodes ----------------------------------------------------------------------------------
    def _reset(self, task_id: str) -> tuple[str, str]:
        out = self._call("POST", "/reset", {"id": self._instance(), "data_idx": self._index(task_id)})
        obs = str(out.get("observation", ""))
        self._score = float(out.get("reward") or 0.0)
        goal = re.search(r"Goal: .*", obs)
        self._read_actions()
        return self.preamble + (goal[0] if goal else ""), obs

    def _read_actions(self) -> None:
        """The server's list of available actions (a JSON list, or text with one action a line), if it has one."""
        if self.actions_path:
            out = self._call("GET", self.actions_path, query={"id": self._instance()})
            lines = out if isinstance(out, list) else str(out).splitlines()
            self.admissible_commands = [str(a).strip() for a in lines if str(a).strip()]

    def _step(self, action: str):
        out = self._call("POST", "/step", {"id": self._instance(), "action": action})
        self._score = max(0.0, min(1.0, self._score + float(out.get("reward") or 0.0)))
        done = bool(out.get("done"))
        obs = out.get("observation", out.get("state", ""))
        if not done:
            self._read_actions()
        return str(obs), self._score, done, done and self._score >= 1.0, {}

    def close(self) -> None:
        if self._id is not None:
            try:
                self._call("POST", "/close", {"id": self._id})
            except IprkitError:
                pass  # a server that is gone has nothing left to close
            self._id = None


_RECIPE = re.compile(r"^craft (\d+) (.+?) using (.+)$")


def textcraft_plan(first_observation: str) -> list[str]:
    """A gold path for a TextCraft task from the crafting commands its first observation lists: craft the goal
    by the first listed recipe that does not need the goal itself, crafting each input the same way when a
    listed recipe makes it, else ``get`` it; a tag input (``planks``) takes a listed item of that kind (``oak
    planks``). Counts match the recipes exactly (the server accepts no scaled recipes)."""
    recipes: dict[str, list[tuple[int, list[tuple[int, str]]]]] = {}
    for line in first_observation.splitlines():
        if m := _RECIPE.match(line.strip()):
            inputs = [(int(c), n.strip()) for c, n in (x.strip().split(" ", 1) for x in m[3].split(","))]
            recipes.setdefault(m[2].strip(), []).append((int(m[1]), inputs))
    goal = re.search(r"Goal: craft (.+?)\.\s*$", first_observation.strip(), re.S)
    if not goal:
        raise IprkitError("textcraft: the first observation names no goal ('Goal: craft X.').")

    def needs(item: str, target: str, seen: tuple = ()) -> bool:
        if item == target:
            return True
        if item in seen or item not in recipes:
            return False
        return all(any(needs(i, target, seen + (item,)) for _, i in ins) for _, ins in recipes[item])

    def recipe(item: str):
        return next((r for r in recipes.get(item, []) if not any(needs(i, item) for _, i in r[1])), None)

    def resolve(item: str) -> str:
        if item in recipes:
            return item
        kinds = [r for r in recipes if (r.endswith(" " + item) or r.endswith(" " + item.rstrip("s"))) and recipe(r)
                 and not any(needs(i, item) or i.endswith(item) for _, i in recipe(r)[1])]
        return kinds[0] if kinds else item

    actions: list[str] = []
    have: dict[str, int] = {}

    def need(item: str, count: int, depth: int = 0) -> str:
        item = resolve(item)
        got = have.get(item, 0)
        if got < count:
            r = recipe(item) if depth < 10 else None
            if r is None:
                actions.append(f"get {count - got} {item}")
                have[item] = count
            else:
                n_out, inputs = r
                for _ in range(math.ceil((count - got) / n_out)):
                    used = [(c, need(i, c, depth + 1)) for c, i in inputs]
                    actions.append(f"craft {n_out} {item} using " + ", ".join(f"{c} {i}" for c, i in used))
                    have[item] = have.get(item, 0) + n_out
        have[item] -= count
        return item

    need(goal[1].strip(), 1)
    return actions
