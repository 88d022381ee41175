"""The ``iprkit`` command line.

    iprkit experts --env textworld --split test --out runs/experts/tw-test.jsonl
"""

import argparse
import sys

from iprkit.errors import IprkitError


def _value(v: str):
    import yaml

    return yaml.safe_load(v)


def env_kwargs(args) -> dict:
    """Constructor settings for the env named by ``--env`` from the common flags."""
    kw = {}
    if args.env in ("textworld", "tw"):
        kw.update(preset=args.preset)
    elif args.env == "alfworld" and args.alfworld_data:
        kw.update(data_dir=args.alfworld_data)
    elif args.env in ("sql", "intercode-sql"):
        kw.update({k: v for k, v in (("data_dir", args.sql_data), ("url", args.sql_url)) if v})
    for item in args.env_opt or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise IprkitError(f"--env-opt {item!r}: expected KEY=VALUE (for example n_test=50).")
        kw[k] = _value(v)
    return kw


def add_env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="textworld", help="textworld (default), alfworld or sql")
    p.add_argument("--preset", default="easy", help="TextWorld difficulty preset: easy, medium, hard")
    p.add_argument("--alfworld-data", help="ALFWorld data folder (default: $ALFWORLD_DATA)")
    p.add_argument("--sql-data", help="InterCode data folder holding spider/ (default: $INTERCODE_DATA)")
    p.add_argument("--sql-url", help="mysql://user:password@host:port of a read-only user (default: "
                                     "$IPRKIT_SQL_URL, else a private MariaDB is started)")
    p.add_argument("--env-opt", action="append", metavar="KEY=VALUE", help="any other env setting, repeatable")


def cmd_experts(args) -> int:
    from iprkit.envs import make_env
    from iprkit.experts import expert_trajectories
    from iprkit.trajectory import save_trajectories

    with make_env(args.env, **env_kwargs(args)) as env:
        ids = env.task_ids(args.split)[: args.limit]
        if hasattr(env, "prepare"):
            env.prepare(args.split, limit=args.limit)
        trajs, failures = expert_trajectories(env, ids)
    save_trajectories(args.out, trajs)
    wins = sum(bool(t.success) for t in trajs)
    mean = sum(t.final_reward or 0.0 for t in trajs) / max(1, len(trajs))
    print(f"{env.name} {args.split}: {wins}/{len(ids)} expert trajectories replay to success "
          f"({100 * wins / max(1, len(ids)):.1f}%), mean final reward {mean:.3f}; wrote {len(trajs)} to {args.out}")
    for f in failures:
        print(f"  failed: task {f['task_id']}: {f['error']}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iprkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("experts", help="write an env's expert trajectories as JSONL")
    add_env_args(p)
    p.add_argument("--split", default="train", help="split name (textworld/sql: train, test; alfworld: train, valid_seen, valid_unseen)")
    p.add_argument("--limit", type=int, help="only the first N tasks of the split")
    p.add_argument("--out", required=True, help="output .jsonl file")
    p.set_defaults(func=cmd_experts)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IprkitError as e:
        print(f"iprkit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
