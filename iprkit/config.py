"""Config dataclasses: YAML files, ``key=value`` overrides, field docs for ``--help``,
and the run directory's resolved config.

Every config is a dataclass with a docstring under each field (as cleanrl writes
them); :func:`field_docs` reads those docstrings from the source, so ``--help`` explains
every field without a second copy of the text.
"""

import ast
import dataclasses
import inspect
import json
import textwrap
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from iprkit.errors import IprkitError
from iprkit.io import write_json


@lru_cache(maxsize=None)
def field_docs(cls) -> dict[str, str]:
    """{field name: the docstring written under it} for a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                    and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _coerce(cls, name: str, tp, value, where: str):
    """Check/convert a value to a field's type, with an error naming the field."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(cls, name, a, value, where)
            except IprkitError:
                pass
        raise IprkitError(f"{where}: field '{name}' of {cls.__name__} must be {tp}, got {value!r}.")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise IprkitError(f"{where}: field '{name}' must be a mapping of {tp.__name__} fields, got {value!r}.")
        return from_dict(tp, value, where=f"{where}.{name}")
    if tp is Any or (tp in (dict, list) and isinstance(value, tp)):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        inner = args[0] if args else Any
        items = [_coerce(cls, name, inner, v, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict and isinstance(value, dict):
        return dict(value)
    raise IprkitError(f"{where}: field '{name}' of {cls.__name__} must be {getattr(tp, '__name__', tp)}, "
                      f"got {value!r} ({type(value).__name__}).")


def from_dict(cls, data: dict, where: str = "config"):
    """Build a config dataclass from a mapping; unknown or mistyped fields are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise IprkitError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; valid fields: {sorted(names)}. "
                          "See `--help` for what each does.")
    kwargs = {k: _coerce(cls, k, hints[k], v, where) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``a.b=value`` strings (values parsed as YAML) applied onto a nested mapping."""
    data = json.loads(json.dumps(data))
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise IprkitError(f"override {item!r}: expected KEY=VALUE (for example lr=1e-4 or model.preset=tiny).")
        node = data
        *parents, leaf = key.strip().split(".")
        if not all(parents + [leaf]):
            raise IprkitError(f"override {item!r}: empty field name in {key!r} (write e.g. mc.n=5).")
        for i, p in enumerate(parents):
            if not isinstance(node.setdefault(p, {}), dict):
                raise IprkitError(f"override {item!r}: {'.'.join(parents[:i + 1])} is a value ({node[p]!r}), not a "
                                  f"group of fields; write {'.'.join(parents[:i + 1])}=VALUE.")
            node = node[p]
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise IprkitError(f"override {item!r}: the value is not valid YAML ({str(e).splitlines()[0]}); quote "
                              "lists as 'seeds=[0,1]'.") from None
    return data


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict:
    """A YAML file that must hold a mapping; a missing file, bad YAML or another shape is a clear error."""
    p = Path(path)
    if not p.is_file():
        raise IprkitError(f"{what} {p}: no such file.")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise IprkitError(f"{what} {p}: not valid YAML ({str(e).splitlines()[0]}).") from None
    if not isinstance(loaded, dict):
        raise IprkitError(f"{what} {p}: must be a mapping of name: value.")
    return loaded


def load_layer(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """What the user set: a YAML file (``--config``), then ``key=value`` overrides, as one mapping."""
    return apply_overrides(read_yaml_mapping(path, "--config") if path else {}, overrides or [])


def load_config(cls, path: str | Path | None = None, overrides: list[str] | None = None, base: dict | None = None,
                where: str | None = None):
    """A config from ``base`` (defaults or a preset), then a YAML file, then ``key=value`` overrides."""
    return from_dict(cls, merge(dict(base or {}), load_layer(path, overrides)), where=where or str(path or "config"))


def merge(a: dict, b: dict) -> dict:
    """``b`` onto ``a``, recursing into mappings both have (presets, YAML files and overrides layer this way)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def help_text(cls, prefix: str = "") -> str:
    """One line per field: name, default and its docstring (nested configs expanded)."""
    lines = []
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            lines.append(help_text(tp, prefix=f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        lines.append(f"  {prefix}{f.name} = {default!r}\n      {docs.get(f.name, '')}")
    return "\n".join(lines)


def save_run_config(path: str | Path, cfg) -> Path:
    """Write the resolved config to ``path`` (a run's ``config.json``); a file there that holds a different
    config is an error (use a new --out, or the same config to resume)."""
    path = Path(path)
    new = json.loads(json.dumps(to_dict(cfg)))
    if path.exists():
        old = json.loads(path.read_text())
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise IprkitError(f"{path} holds a different config (fields {diff} differ). Use another --out "
                              "directory, or rerun with the same config to resume.")
        return path
    return write_json(path, new)
