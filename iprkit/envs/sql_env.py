"""InterCode-SQL adapter over a real MySQL-protocol server.

The episode logic and the reward are intercode-bench's own ``SqlEnv`` (its Docker
container start is bypassed; any MariaDB/MySQL server loaded with the Spider dump
serves). Tasks are Spider dev (``spider/ic_spider_dev.json``, 1,034 tasks over 20
databases). Spider's train split is not shipped with InterCode, so iprkit splits dev
*by database*: the five databases in :data:`TEST_DBS` (205 tasks) are the test split,
the other fifteen (829 tasks) the train split; no database is in both.

Isolation: the agent connects as a read-only user (``SELECT`` only), every episode
starts with a rollback, and each statement has a server-side time limit
(``max_statement_time``) and a row cap, so an agent's DROP, DELETE, UPDATE or an
enormous cross join can neither change the data later episodes see nor hang a batch.
"""

import json
import os
import re
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from iprkit.envs.base import Env
from iprkit.errors import IprkitError

TEST_DBS = ("concert_singer", "pets_1", "poker_player", "orchestra", "employee_hire_evaluation")
"""The databases whose tasks form the test split (205 of the 1,034 Spider dev tasks)."""
_READ_PRIVS = {"SELECT", "SHOW VIEW", "USAGE"}
INSTRUCTION = ("Interact with a MySQL database to answer a question. Each turn, think, then give one SQL "
               "statement as the action; when the last result answers the question, give the action `submit`.\n"
               "Database `{db}` has the tables:\n{tables}")


def sql_data_dir(data_dir: str | Path | None = None) -> Path:
    """The InterCode data folder (holding ``spider/``), from ``data_dir`` or ``$INTERCODE_DATA``."""
    base = data_dir or os.environ.get("INTERCODE_DATA")
    if not base:
        raise IprkitError("sql: no InterCode data folder. Pass data_dir= (or --sql-data) or set INTERCODE_DATA to "
                          "the folder holding spider/ic_spider_dev.json and spider/ic_spider_dbs.sql.")
    root = Path(base).expanduser()
    if not (root / "spider" / "ic_spider_dev.json").exists():
        raise IprkitError(f"sql: {root}/spider/ic_spider_dev.json not found; INTERCODE_DATA must hold spider/.")
    return root


def parse_url(url: str) -> dict:
    """``mysql://user:password@host:port`` -> mysql.connector settings."""
    u = urlparse(url)
    if u.scheme not in ("mysql", "mariadb") or not u.hostname:
        raise IprkitError(f"sql: bad server URL {url!r}; expected mysql://user:password@host:port.")
    return {"host": u.hostname, "port": u.port or 3306, "user": unquote(u.username or ""),
            "password": unquote(u.password or "")}


def _intercode_env_class():
    """intercode's SqlEnv with its Docker start replaced by a plain connection."""
    import gymnasium as gym
    import mysql.connector
    from intercode.envs.ic_env import ACTION_EXEC, logger
    from intercode.envs.sql.sql_env import SqlEnv
    from intercode.utils import IntercodeDataLoader

    class ServerSqlEnv(SqlEnv):
        def __init__(self, cfg: dict, data_path: str, timeout_s: float, max_rows: int):
            gym.Env.__init__(self)
            self.kwargs, self.logger, self.tool_mode, self.traj_dir = {}, logger, False, None
            self.logger.disabled = True
            self.data_path, self.data_loader = data_path, IntercodeDataLoader(data_path)
            self.preprocess = lambda record: f"USE `{record['extra']['db']}`"
            self.image_name = self.container_name = self.container = None
            self.cfg, self.timeout_s, self.max_rows = cfg, timeout_s, max_rows
            self._connect()

        def _connect(self):
            try:
                self.cnx = mysql.connector.connect(**self.cfg, connection_timeout=10, autocommit=False)
            except mysql.connector.Error as e:
                raise IprkitError(f"sql: cannot reach the server at {self.cfg['host']}:{self.cfg['port']} as "
                                  f"{self.cfg['user']!r} ({e.msg}). Start it (or fix --sql-url / IPRKIT_SQL_URL) and "
                                  "rerun: finished stages are kept.") from None
            self.cur = self.cnx.cursor(buffered=True)
            self.cur.execute("SHOW GRANTS")
            privs = set()
            for (grant,) in self.cur.fetchall():
                m = re.match(r"GRANT (.+?) ON ", str(grant))
                privs |= {p.strip().upper() for p in m[1].split(",")} if m else set()
            if privs - _READ_PRIVS:
                raise IprkitError(f"sql: user {self.cfg['user']!r} holds {sorted(privs - _READ_PRIVS)}. Agents must not "
                                  "change the data later episodes see: connect as a user with SELECT only "
                                  "(GRANT SELECT ON `<db>`.* TO ...).")
            try:  # MariaDB: seconds, any statement
                self.cur.execute(f"SET SESSION max_statement_time = {float(self.timeout_s)}")
            except mysql.connector.Error:  # MySQL: milliseconds, SELECT only
                self.cur.execute(f"SET SESSION max_execution_time = {int(self.timeout_s * 1000)}")
            self.cur.execute(f"SET SESSION sql_select_limit = {int(self.max_rows)}")
            self.cur.execute("SELECT @@lower_case_table_names")
            if self.cur.fetchall()[0][0] == 0:
                warnings.warn("sql: the server has lower_case_table_names=0; Spider's gold queries spell table names "
                              "in any case and ~15% will fail. Start it with --lower-case-table-names=1 (as InterCode does).")

        def reset_container(self):
            if not self.cnx.is_connected():
                self._connect()
            self.cnx.rollback()

        def exec_action(self, action: str) -> None:
            try:
                self.cur.execute(action)
                self.observation = self.cur.fetchall() if self.cur.description is not None else None
                self.info[ACTION_EXEC] = True
            except Exception as err:  # the query's own error is the agent's observation
                self.observation = f"Error executing query: {getattr(err, 'msg', err)}"
                self.info[ACTION_EXEC] = False
                if not self.cnx.is_connected():  # the agent's own query may end its session (KILL CONNECTION_ID())
                    self._connect()  # a server that is gone raises here, naming it
                    if getattr(self, "record", None) is not None:
                        self.cur.execute(self.preprocess(self.record))  # the episode's database again

        def close(self):
            self.cur.close()
            self.cnx.close()

    return ServerSqlEnv


class SqlEnv(Env):
    """InterCode-SQL on Spider dev, split by database."""

    name = "sql"
    thread_safe = True  # each copy has its own database connection
    splits = ("train", "test")
    test_splits = ("test",)
    option_docs = {
        "data_dir": "folder holding spider/ (default: $INTERCODE_DATA)",
        "url": "mysql://user:password@host:port of a read-only user (default: $IPRKIT_SQL_URL, else a private "
               "MariaDB is started)",
        "timeout_s": "server-side time limit of one statement, seconds",
        "max_rows": "most rows a statement may return",
        "max_steps": "step limit of an episode",
        "obs_chars": "longest observation in characters (longer results are cut)",
        "preamble": "text in place of the instruction's opening (e.g. the paper's prompt from its release)",
    }
    preamble = INSTRUCTION.split("Database `")[0]

    def __init__(self, data_dir: str | Path | None = None, url: str | None = None, timeout_s: float = 5.0,
                 max_rows: int = 10_000, max_steps: int = 10, obs_chars: int = 1500, preamble: str | None = None):
        super().__init__(preamble)
        root = sql_data_dir(data_dir)
        self.tasks_path = root / "spider" / "ic_spider_dev.json"
        self.tasks = json.loads(self.tasks_path.read_text())
        self.max_steps, self.obs_chars = max_steps, obs_chars
        self.server = None
        url = url or os.environ.get("IPRKIT_SQL_URL")
        if url is None:  # no server given: start a private one for this process
            from iprkit.envs.mariadb import LocalMariaDB

            self.server = LocalMariaDB().start()
            self.server.load_dump(root / "spider" / "ic_spider_dbs.sql")
            url = self.server.grant_read_only([t["db"] for t in self.tasks])
        self.url = url
        self._ic = _intercode_env_class()(parse_url(url), str(self.tasks_path), timeout_s, max_rows)

    def shared_kwargs(self) -> dict:
        """Copies connect to this env's server (a private MariaDB is started once, by the first)."""
        return {"url": self.url}

    def task_ids(self, split: str) -> list[str]:
        self.check_split(split)
        return [str(i) for i, t in enumerate(self.tasks) if (t["db"] in TEST_DBS) == (split == "test")]

    def release_task_id(self, item: dict) -> str | None:
        """The kit's own ``task_id``, else the task whose question the item's human turns quote."""
        if (own := super().release_task_id(item)) is not None:
            return own
        if "_by_question" not in self.__dict__:
            self._by_question = {}
            for i, t in enumerate(self.tasks):
                self._by_question.setdefault(t["query"].strip(), str(i))
        text = "\n".join(turn.get("value", "") for turn in item.get("conversations", []) if turn.get("from") == "human")
        hits = [tid for q, tid in self._by_question.items() if q and q in text]
        return max(hits, key=lambda tid: len(self.tasks[int(tid)]["query"])) if hits else None

    def task(self, task_id: str) -> dict:
        return self.tasks[int(task_id)]

    def expert(self, task_id: str) -> list[str]:
        self.check_task(task_id)
        return [self.task(task_id)["gold"], "submit"]

    def _reset(self, task_id: str) -> tuple[str, str]:
        t = self.task(task_id)
        self._ic.reset(int(task_id))
        question = self._ic.query
        tables = "\n".join(f"- {name}({', '.join(cols)})" for name, cols in t["db_tables"].items())
        return INSTRUCTION.format(db=t["db"], tables=tables), f"Question: {question}"

    def _step(self, action: str):
        action = action.strip().rstrip(";").strip() if action.strip().lower() != "submit" else "submit"
        import mysql.connector

        with warnings.catch_warnings():  # scipy's kendalltau warns on constant inputs
            warnings.simplefilter("ignore")
            try:
                obs, reward, done, info = self._ic.step(action)
            except mysql.connector.Error as e:  # scoring a submission runs queries outside the agent's turn
                raise IprkitError(f"sql: the server at {self.url.rsplit('@', 1)[-1]} failed while scoring task "
                                  f"{self._task} ({e}); is it running? A rerun resumes the stage.") from None
        if done:
            r = float(reward)
            return f"Submitted. Reward: {r}", r, True, r >= 1.0, {}
        text = "OK (no rows returned)" if obs is None else str(obs)
        if len(text) > self.obs_chars:
            text = text[: self.obs_chars] + f" ... [truncated; {len(obs)} rows]"
        return text, 0.0, False, False, {"executed": bool(info.get("action_executed", False))}

    def close(self) -> None:
        self._ic.close()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def expert_thought(self, action: str, seen: str) -> str:
        if action == "submit":
            return "The last result answers the question, so I submit it."
        tables = [w for w in self.task(self._task)["db_tables"] if w.lower() in action.lower()] if self._task else []
        where = " and ".join(f"`{t}`" for t in tables) or "the database"
        return f"The question asks about data in {where}; I query it directly."
