"""An agent's SQL can neither change the data later episodes see nor hang a batch."""

import math
import time

import pytest

from iprkit.errors import IprkitError

LIMIT = 2.0  # the sql_env fixture's timeout_s


def _task_on(env, db):
    return next(t for t in env.task_ids("train") + env.task_ids("test") if env.task(t)["db"] == db)


def _counts(env, task, tables):
    env.reset(task)
    out = {}
    for tb in tables:
        r = env.step(f"SELECT COUNT(*) FROM `{tb}`")
        out[tb] = r.observation
    return out


@pytest.mark.parametrize("db", ["world_1", "concert_singer"])
def test_destructive_and_runaway_queries_are_contained(sql_env, db):
    task = _task_on(sql_env, db)
    tables = list(sql_env.task(task)["db_tables"])
    before = _counts(sql_env, task, tables)
    rows = {tb: int(c.strip("[(,)]")) for tb, c in before.items() if not c.startswith("Error")}
    t0 = max(rows, key=rows.get)
    k = math.ceil(12 / math.log10(max(rows[t0], 2)))  # enough copies for >= 1e12 joined rows
    huge = ", ".join(f"`{t0}` t{i}" for i in range(k))
    attacks = [f"DROP TABLE `{t0}`", f"DELETE FROM `{t0}`", f"UPDATE `{t0}` SET {sql_env.task(task)['db_tables'][t0][0]} = NULL",
               f"CREATE TABLE evil (x int)", f"INSERT INTO `{t0}` VALUES ()",
               # an enormous cross join: far more rows than the server could produce within the limit
               f"SELECT COUNT(*) FROM {huge}",
               f"SELECT * FROM {huge}"]
    sql_env.reset(task)
    for q in attacks:
        start = time.perf_counter()
        r = sql_env.step(q)
        took = time.perf_counter() - start
        assert took < LIMIT + 1.5, f"{q!r} took {took:.1f}s"
        assert not r.done
        if not q.startswith("SELECT *"):
            assert r.observation.startswith("Error executing query"), (q, r.observation)
        else:  # the row cap keeps the answer bounded and the observation truncated
            assert "truncated" in r.observation
    # the next episode sees the same data, and the gold answer still scores 1
    assert _counts(sql_env, task, tables) == before
    sql_env.reset(task)
    sql_env.step(sql_env.expert(task)[0])
    assert sql_env.step("submit").reward == 1.0


def test_writable_user_is_refused(sql_server, intercode_dir):
    url, server = sql_server
    if server is None:
        pytest.skip("needs root on the private test server (IPRKIT_SQL_URL points at the user's own)")
    from iprkit.envs.sql_env import SqlEnv

    server._sql("CREATE USER IF NOT EXISTS 'rw'@'%' IDENTIFIED BY 'rw'; GRANT ALL PRIVILEGES ON *.* TO 'rw'@'%'")
    with pytest.raises(IprkitError, match="SELECT only"):
        SqlEnv(data_dir=intercode_dir, url=server.url("rw", "rw"))


def test_unreachable_server_is_a_clear_error(intercode_dir):
    from iprkit.envs.mariadb import _free_port
    from iprkit.envs.sql_env import SqlEnv

    with pytest.raises(IprkitError, match=r"cannot reach the server at 127\.0\.0\.1:\d+.*IPRKIT_SQL_URL"):
        SqlEnv(data_dir=intercode_dir, url=f"mysql://u:p@127.0.0.1:{_free_port()}")
