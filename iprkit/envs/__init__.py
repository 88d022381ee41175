"""Environments: one protocol (:class:`Env`), small adapters over real packages, found as plug-ins.

>>> env = make_env("textworld", preset="easy")
>>> instruction, obs = env.reset(env.task_ids("test")[0])

Every env, built in or not, registers under the Python entry-point group ``iprkit.envs``:
a name pointing at an :class:`Env` subclass. A package outside the kit adds one with no
change to the kit, in its own ``pyproject.toml``::

    [project.entry-points."iprkit.envs"]
    lights = "my_package.lights:LightsEnv"

Several names may point at one class (aliases, e.g. ``intercode-sql`` for ``sql``); the
class's ``name`` is the canonical one. ``iprkit envs`` lists what is installed.
"""

import inspect
from functools import lru_cache
from importlib.metadata import EntryPoint, distributions
from typing import Callable

from iprkit.envs.base import Env, StepResult
from iprkit.errors import IprkitError

GROUP = "iprkit.envs"


@lru_cache(maxsize=1)
def installed() -> dict[str, EntryPoint]:
    """Every registered env name (aliases included) -> its entry point. Imports none of them.

    Every distribution on the path is read, not only the first of each name: a stale ``*.egg-info``
    in a source checkout (on ``sys.path`` as the current folder) must not hide the installed metadata."""
    eps: dict[str, EntryPoint] = {}
    for dist in distributions():
        for ep in dist.entry_points.select(group=GROUP):
            eps.setdefault(ep.name, ep)
    if not any(ep.dist and ep.dist.name == "iprkit" for ep in eps.values()):
        raise IprkitError("no built-in envs registered: iprkit's package metadata is missing or stale. Install the "
                          "kit (`pip install -e .` in its folder, or `make setup`).")
    return eps


def env_class(name: str) -> type[Env]:
    """The :class:`Env` subclass registered as ``name`` (its module is imported, its env package is not)."""
    eps = installed()
    if name not in eps:
        raise IprkitError(f"unknown env {name!r}; installed: {sorted(eps)} (`iprkit envs` describes each). An env "
                          f"from another package registers under the entry-point group {GROUP!r}.")
    try:
        cls = eps[name].load()
    except Exception as e:  # a broken plug-in must not look like a kit bug
        raise IprkitError(f"env {name!r}: cannot load {eps[name].value} ({type(e).__name__}: {e}).") from None
    if not (isinstance(cls, type) and issubclass(cls, Env)):
        raise IprkitError(f"env {name!r}: {eps[name].value} is not a subclass of iprkit.envs.Env.")
    return cls


def canonical(name: str) -> str:
    """The canonical name of an env name or alias."""
    return env_class(name).name


def make_env(name: str, **kwargs) -> Env:
    """Build an env by name; keyword arguments go to its constructor (``iprkit envs`` lists them)."""
    cls = env_class(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        raise IprkitError(f"env {cls.name!r}: bad setting ({e}); its options: {sorted(options(cls))}.") from None
    return cls(**kwargs)


def env_factory(name: str, kwargs: dict, first: Env) -> Callable[[], Env]:
    """Builds more copies of the env ``first`` (one per live episode), sharing its resources."""
    shared = {**kwargs, **first.shared_kwargs()}
    return lambda: make_env(name, **shared)


def options(cls: type[Env]) -> dict[str, tuple[object, str]]:
    """The constructor options of an env class: {name: (default, doc)}."""
    out = {}
    for p in inspect.signature(cls).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = "required" if p.default is p.empty else p.default
        out[p.name] = (default, cls.option_docs.get(p.name, ""))
    return out


def describe() -> list[dict]:
    """One entry per installed env class: name, aliases, where it comes from, splits and options."""
    by_target: dict[str, list[str]] = {}
    for n, ep in installed().items():
        by_target.setdefault(ep.value, []).append(n)
    rows = []
    for target, names in by_target.items():
        ep = installed()[names[0]]
        try:
            cls = env_class(names[0])
        except IprkitError as e:
            rows.append({"name": names[0], "aliases": names[1:], "target": target, "error": str(e)})
            continue
        rows.append({"name": cls.name, "aliases": sorted(n for n in names if n != cls.name), "target": target,
                     "package": ep.dist.name if ep.dist else "?", "doc": (cls.__doc__ or "").strip().split("\n")[0],
                     "splits": list(cls.splits), "test_splits": list(cls.test_splits), "options": options(cls)})
    return sorted(rows, key=lambda r: r["name"])


__all__ = ["Env", "StepResult", "make_env", "env_class", "env_factory", "canonical", "installed", "describe", "GROUP"]
