"""Environments: one protocol (:class:`Env`), small adapters over real packages.

>>> env = make_env("textworld", preset="easy")
>>> instruction, obs = env.reset(env.task_ids("test")[0])
"""

from iprkit.envs.base import Env, StepResult
from iprkit.errors import IprkitError


def _textworld(**kw):
    from iprkit.envs.textworld_env import TextWorldEnv
    return TextWorldEnv(**kw)


def _alfworld(**kw):
    from iprkit.envs.alfworld_env import ALFWorldEnv
    return ALFWorldEnv(**kw)


def _sql(**kw):
    from iprkit.envs.sql_env import SqlEnv
    return SqlEnv(**kw)


ENVS = {"textworld": _textworld, "alfworld": _alfworld, "sql": _sql}
"""Env name -> factory. ``intercode-sql`` is an alias of ``sql``."""
ALIASES = {"intercode-sql": "sql", "intercode_sql": "sql", "tw": "textworld"}


def make_env(name: str, **kwargs) -> Env:
    """Build an env adapter by name; keyword arguments go to its constructor."""
    key = ALIASES.get(name, name)
    if key not in ENVS:
        raise IprkitError(f"unknown env {name!r}; choose one of {sorted(ENVS)}.")
    try:
        return ENVS[key](**kwargs)
    except TypeError as e:
        raise IprkitError(f"env {key!r}: bad setting ({e}).") from None


__all__ = ["Env", "StepResult", "make_env", "ENVS"]
