"""The ``iprkit`` command line.

    iprkit envs                                   # installed environments and their options
    iprkit experts --env textworld --split test --out runs/experts/tw-test.jsonl

Building the parser imports no torch, TRL or env package: each sub-command imports what it
needs when it runs, so ``--help`` and argument errors answer at once.
"""

import argparse
import sys
from pathlib import Path

from iprkit.errors import IprkitError, disk_full, disk_full_error


def whole(minimum: int):
    """An argparse type: a whole number >= ``minimum``, with a message saying so."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"{v} is too small: give a whole number >= {minimum}")
        return v
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def _value(v: str):
    import yaml

    return yaml.safe_load(v)


def env_kwargs(args) -> dict:
    """Constructor settings for the env named by ``--env`` (any alias) from the common flags."""
    from iprkit.envs import canonical

    kw, name = {}, canonical(args.env)
    if name == "textworld":
        kw.update(preset=args.difficulty)
    elif name == "alfworld" and args.alfworld_data:
        kw.update(data_dir=args.alfworld_data)
    elif name == "sql":
        kw.update({k: v for k, v in (("data_dir", args.sql_data), ("url", args.sql_url)) if v})
    for item in args.env_opt or []:
        k, sep, v = item.partition("=")
        if not sep:
            raise IprkitError(f"--env-opt {item!r}: expected KEY=VALUE (for example n_test=50).")
        kw[k] = _value(v)
    return kw


def add_env_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", default="textworld", help="any installed env (`iprkit envs`); built in: textworld (default), "
                                                      "alfworld, sql")
    p.add_argument("--difficulty", default="easy", help="TextWorld difficulty preset: easy, medium, hard")
    p.add_argument("--alfworld-data", help="ALFWorld data folder (default: $ALFWORLD_DATA)")
    p.add_argument("--sql-data", help="InterCode data folder holding spider/ (default: $INTERCODE_DATA)")
    p.add_argument("--sql-url", help="mysql://user:password@host:port of a read-only user (default: "
                                     "$IPRKIT_SQL_URL, else a private MariaDB is started)")
    p.add_argument("--env-opt", action="append", metavar="KEY=VALUE",
                   help="any env setting (`iprkit envs` lists each env's), repeatable")


def cmd_experts(args) -> int:
    from iprkit.envs import make_env
    from iprkit.experts import expert_trajectories
    from iprkit.trajectory import save_trajectories

    with make_env(args.env, **env_kwargs(args)) as env:
        ids = env.task_ids(args.split)[: args.limit]
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


def _expert_data(args):
    """Trajectories from --experts FILE, else generated from the env's train split."""
    from iprkit.trajectory import load_trajectories

    if args.experts:
        return load_trajectories(args.experts)
    from iprkit.envs import make_env
    from iprkit.experts import expert_trajectories

    with make_env(args.env, **env_kwargs(args)) as env:
        env.prepare(args.split, limit=args.limit)
        trajs, failures = expert_trajectories(env, env.task_ids(args.split)[: args.limit])
    if failures:
        print(f"skipped {len(failures)} tasks whose gold path raised", file=sys.stderr)
    return [t for t in trajs if t.success]


def cmd_sft(args) -> int:
    from iprkit.config import load_config
    from iprkit.presets import SFT_PRESETS
    from iprkit.settings import SFTSettings

    if args.preset and args.preset not in SFT_PRESETS:
        raise IprkitError(f"unknown SFT preset {args.preset!r}; choose one of {list(SFT_PRESETS)}.")
    cfg = load_config(SFTSettings, args.config, args.overrides, base=SFT_PRESETS.get(args.preset, {}))
    trajs = _expert_data(args)
    if not trajs:
        raise IprkitError("no expert trajectories to train on (all failed to replay?).")
    import torch

    from iprkit.sft import train_sft

    torch.set_num_threads(args.threads)
    model_dir = train_sft(trajs, cfg, args.out, seed=args.seed)
    print(f"SFT on {len(trajs)} expert trajectories -> {model_dir}")
    return 0


def cmd_eval(args) -> int:
    from iprkit.config import load_config, save_run_config
    from iprkit.settings import GenerationSettings

    gen = load_config(GenerationSettings, args.config, args.overrides)
    import torch

    from iprkit.backends import HFBackend
    from iprkit.envs import env_factory, make_env
    from iprkit.evaluate import evaluate_model, random_agent, save_eval
    from iprkit.io import write_json
    from iprkit.layout import EvalPaths

    torch.set_num_threads(args.threads)
    kw, paths = env_kwargs(args), EvalPaths(Path(args.out))
    with make_env(args.env, **kw) as env:
        splits = [args.split] if args.split else list(env.test_splits)
        report = {}
        for split in splits:
            ids = env.task_ids(split)[: args.limit]
            env.prepare(split, limit=args.limit)
            if args.model == "random":
                metrics, trajs = random_agent(env, ids, seed=args.seed)
            else:
                from iprkit.models import load_model

                model, tok = load_model(args.model)
                metrics, trajs = evaluate_model(HFBackend(model, tok, gen), env_factory(args.env, kw, env), ids,
                                                seed=args.seed, max_live=gen.batch_size, desc=f"eval {split}")
            save_eval(paths, split, metrics, trajs)
            report[split] = metrics
            print(f"{env.name} {split}: success {metrics['success_rate']:.3f}, reward {metrics['avg_reward']:.3f}, "
                  f"steps {metrics['avg_steps']:.2f}, invalid {metrics['invalid_action_rate']:.3f} "
                  f"({metrics['episodes']} episodes)")
    save_run_config(paths.config, gen)
    write_json(paths.summary, {"model": args.model, "env": args.env, **report})
    return 0


def cmd_run(args) -> int:
    from iprkit.presets import run_settings

    cfg = run_settings(args.preset, args.config, args.overrides)
    from iprkit.layout import RunLayout
    from iprkit.loop import Runner, StopRun

    runner = Runner(cfg, args.out, stop_after=args.stop_after, workers=args.workers)
    try:
        runner.run()
    except StopRun as e:
        print(f"stopped after {e} (stop_after); rerun without it to resume")
        return 0
    finally:
        runner.close()
    print(RunLayout(args.out).results_md.read_text())
    return 0


def cmd_batch(args) -> int:
    from iprkit.batch import batch, load_params

    params = load_params(args.params)
    summary = batch(args.out, args.preset, params, args.grid, args.notebooks, args.timeout)
    from iprkit.layout import BatchLayout

    layout = BatchLayout(args.out)
    print(layout.summary_md.read_text())
    print(f"report: {layout.report}")
    return 0 if all(r.get("ok") for r in summary["rows"]) else 1


def cmd_import(args) -> int:
    from iprkit.io import write_json, write_jsonl
    from iprkit.release import import_sft, is_preference, pair_from_release, read_items, release_preamble, summary

    items = read_items(args.release)
    if items and all(is_preference(it) for it in items):
        pairs = [pair_from_release(it, f"{args.release}: item {i}") for i, it in enumerate(items)]
        write_jsonl(args.out, pairs)
        print(f"{len(pairs)} preference pairs -> {args.out} (train them with iprkit.train.train_dpo)")
        return 0
    from iprkit.envs import make_env
    from iprkit.trajectory import save_trajectories

    kw = env_kwargs(args)
    preamble = None if args.env_instruction else release_preamble(items)
    if preamble is not None:
        kw["preamble"] = preamble
    with make_env(args.env, **kw) as env:
        trajs, report = import_sft(env, items)
    save_trajectories(args.out, trajs)
    report_path = args.report or f"{args.out}.report.json"
    write_json(report_path, {"release": str(args.release), "env": args.env, "items": len(items),
                             "replayed": len(trajs), "instruction": "release" if preamble else "env", "rows": report})
    print(summary(report))
    print(f"wrote {len(trajs)} expert trajectories to {args.out}; per-item report {report_path}"
          + ("; the release's instruction is kept (use it in a run as experts_file=" + str(args.release) + ")"
             if preamble else ""))
    return 0 if trajs else 1


def cmd_export(args) -> int:
    from iprkit.io import read_jsonl
    from iprkit.release import pair_to_release, to_conversations

    if args.pairs:
        items = [pair_to_release(p) for _, p in read_jsonl(args.pairs)]
    else:
        from iprkit.envs import env_class
        from iprkit.trajectory import load_trajectories

        trajs = load_trajectories(args.experts)
        items = [to_conversations(t, extra=env_class(t.env).release_fields(t.task_id)) for t in trajs]
    from iprkit.io import atomic_write_text
    import json

    atomic_write_text(args.out, json.dumps(items, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(items)} items in the IPR/ETO release format -> {args.out}")
    return 0


def cmd_envs(args) -> int:
    from iprkit.envs import describe

    for e in describe():
        if args.name and args.name != e["name"] and args.name not in e.get("aliases", []):
            continue
        alias = f" (aliases: {', '.join(e['aliases'])})" if e.get("aliases") else ""
        if "error" in e:
            print(f"{e['name']}{alias}: {e['target']}\n  BROKEN: {e['error']}\n")
            continue
        print(f"{e['name']}{alias}: {e['doc']}\n  from {e['package']} ({e['target']})\n"
              f"  splits: {', '.join(e['splits'])}; evaluated on: {', '.join(e['test_splits'])}\n  options:")
        for opt, (default, doc) in e["options"].items():
            print(f"    {opt} = {default!r}" + (f"  {doc}" if doc else ""))
        print()
    return 0


class _FieldsHelp(argparse.Action):
    """``-h``: the usage, then every field of a settings class with its docstring (imported only when asked)."""

    def __init__(self, option_strings, dest, settings: str = "", **kw):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show this help and every config field", **kw)
        self.settings = settings

    def __call__(self, parser, namespace, values, option_string=None):
        from iprkit import settings
        from iprkit.config import help_text

        parser.print_help()
        print("\nconfig fields (set in --config YAML or as KEY=VALUE, nested with dots):")
        print(help_text(getattr(settings, self.settings)))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iprkit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("experts", help="write an env's expert trajectories as JSONL")
    add_env_args(p)
    p.add_argument("--split", default="train", help="split name (textworld/sql: train, test; alfworld: train, valid_seen, valid_unseen)")
    p.add_argument("--limit", type=whole(1), help="only the first N tasks of the split")
    p.add_argument("--out", required=True, help="output .jsonl file")
    p.set_defaults(func=cmd_experts)

    p = sub.add_parser("import", help="the paper's release files (IPR/ETO SFT or preference format) as the kit's data, "
                                      "replayed in the env with a per-item report")
    add_env_args(p)
    p.add_argument("release", help="release file: a JSON list (or JSONL) of {id, conversations, game_file?} items, or "
                                   "of {id, prompt, chosen, rejected} preference items")
    p.add_argument("--out", required=True, help="kit JSONL: expert trajectories (SFT items) or pairs (preference items)")
    p.add_argument("--env-instruction", action="store_true",
                   help="use the env's own instruction (default: keep the release's turn 0 verbatim as the preamble)")
    p.add_argument("--report", help="per-item replay report (default: OUT.report.json)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export", help="the kit's expert trajectories (or pairs) in the IPR/ETO release format")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--experts", help="trajectories JSONL (e.g. a run's experts/train.jsonl)")
    src.add_argument("--pairs", help="pairs JSONL (e.g. a run's pairs.jsonl)")
    p.add_argument("--out", required=True, help="release file to write (a JSON list)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("envs", help="list the installed environments (built in and plug-ins) with their options")
    p.add_argument("name", nargs="?", help="only this env (or alias)")
    p.set_defaults(func=cmd_envs)

    p = sub.add_parser("sft", help="supervised fine-tuning of the base agent (TRL SFTTrainer)", add_help=False)
    p.add_argument("-h", "--help", action=_FieldsHelp, settings="SFTSettings")
    add_env_args(p)
    p.add_argument("--preset", default="tiny", help="starting config: tiny (default), smoke, paper")
    p.add_argument("--config", help="YAML file of SFTSettings fields")
    p.add_argument("--experts", help="expert trajectories (.jsonl); default: generated from --env's --split")
    p.add_argument("--split", default="train", help="split to take expert trajectories from")
    p.add_argument("--limit", type=whole(1), help="only the first N tasks")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--seed", type=whole(0), default=0, help="seed of initialisation, data order and dropout")
    p.add_argument("--threads", type=whole(1), default=2, help="torch CPU threads")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. learning_rate=1e-3")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("eval", help="greedy evaluation of a model (or the random agent) on a split", add_help=False)
    p.add_argument("-h", "--help", action=_FieldsHelp, settings="GenerationSettings")
    add_env_args(p)
    p.add_argument("--model", required=True, help="model folder, hub id, or 'random' (random admissible actions)")
    p.add_argument("--split", help="split to evaluate (default: the env's test splits, each reported apart)")
    p.add_argument("--limit", type=whole(1), help="only the first N tasks of each split")
    p.add_argument("--config", help="YAML file of GenerationSettings fields")
    p.add_argument("--seed", type=whole(0), default=0)
    p.add_argument("--threads", type=whole(1), default=2, help="torch CPU threads")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="generation overrides, e.g. max_new_tokens=64")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("run", help="the main job: SFT, then ETO/IPR iterations and baselines, one results table",
                       add_help=False)
    p.add_argument("-h", "--help", action=_FieldsHelp, settings="RunSettings")
    p.add_argument("--preset", default="demo", help="smoke, demo (default), regime or paper")
    p.add_argument("--config", help="YAML file of RunSettings fields")
    p.add_argument("--out", required=True, help="run directory (a rerun resumes)")
    p.add_argument("--stop-after", help="stop cleanly after this stage (e.g. sft, ipr/iter1/score, seed0/sft/eval); "
                                        "rerun to resume")
    p.add_argument("--workers", type=whole(1), default=1, help="processes that split exploration, Monte Carlo scoring "
                   "and evaluation (launched with torchrun; the results are the same for any number)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. seeds=[0,1,2] methods=[sft,ipr] mc.n=5")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("batch", help="execute the notebook sequence with papermill (over a grid), collect metrics, HTML report")
    p.add_argument("--preset", default="demo", help="run preset passed to every notebook")
    p.add_argument("--out", required=True, help="batch directory")
    p.add_argument("--params", help="YAML of notebook parameters (e.g. seed, overrides: [...])")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a RunSettings field to sweep, repeatable")
    p.add_argument("--notebooks", nargs="*", help="only notebooks whose names start with these (e.g. 01 02)")
    p.add_argument("--timeout", type=whole(1), help="seconds per cell")
    p.set_defaults(func=cmd_batch)
    return parser


OUT_IS_FILE = {"experts", "import", "export"}
"""Commands whose --out is a file (the others write a folder)."""


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from iprkit.io import check_output

        if "out" in vars(args):  # every command but `envs` writes somewhere
            check_output(args.out, "--out file" if args.command in OUT_IS_FILE else "--out")
        return args.func(args)
    except IprkitError as e:
        print(f"iprkit: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if not disk_full(e):
            raise
        print(f"iprkit: error: {disk_full_error(args.command, e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
