"""The batch's research report: one offline HTML file (``report.html``) over every grid point.

Per grid point: the results table with its paired comparisons (held-out and explored tasks), the
learning curves, the SFT and DPO loss curves, the step-reward heatmap and example pairs of each
method, the stage timings and the resolved config; across grid points, the last iteration of
each method side by side. plotly.js is embedded once, so the file opens without a network.
Nothing here recomputes: it reads what the run wrote (:mod:`iprkit.views`).
"""

import html
import json
from pathlib import Path

from iprkit.io import read_json, read_jsonl
from iprkit.layout import BatchLayout, RunLayout

TD = "border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top"
CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:auto;padding:0 16px;color:#111}
h2{border-bottom:2px solid #ddd;margin-top:40px}table{border-collapse:collapse;margin:8px 0}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:400px}
nav a{margin-right:12px}.note{color:#555}"""


def html_table(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th style='{TD}'>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td style='{TD}'>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _turns(msgs: list[dict], first_highlight: bool = False) -> str:
    role = {"user": "env", "assistant": "agent"}
    out = []
    for i, m in enumerate(msgs):
        mark = "background:rgba(255,200,0,.35);border-left:3px solid #e0a000;padding-left:4px" if first_highlight and i == 0 else ""
        out.append(f"<div style='margin:2px 0;{mark}'><b>{role.get(m['role'], m['role'])}</b>: "
                   f"<span style='white-space:pre-wrap'>{html.escape(m['content'])}</span></div>")
    return "".join(out)


def decided_by(pair: dict) -> str:
    """Which estimators made the step rewards that decided a step pair (``mc.estimator``), as a clause."""
    est = pair.get("estimators")
    return f"; step rewards by {', '.join(f'{side}: {e}' for side, e in est.items())}" if est else ""


def pair_html(p: dict) -> str:
    """One pair with its whole context: the instruction, the shared prefix (collapsed), the branch step highlighted
    on both sides, the continuations (collapsed), and the rewards that decided it."""
    prompt = p.get("prompt") or []
    instruction, prefix = (prompt[0]["content"] if prompt else ""), prompt[1:]
    steps_before = sum(m["role"] == "assistant" for m in prefix)
    est = lambda v: "-" if v is None else f"{v:.2f}"
    rewards = html_table(["", "expert", "agent"], [
        [f"MC step reward at step {p['step']}", est(p.get("expert_mc")), est(p.get("agent_mc"))],
        ["final reward", est(p.get("expert_final")), est(p.get("agent_final"))]])

    def side(name: str, msgs: list[dict]) -> str:
        head, rest = msgs[:1], msgs[1:]
        more = f"<details><summary>continuation ({len(rest)} turns)</summary>{_turns(rest)}</details>" if rest else ""
        return f"<div style='flex:1;min-width:0'><h4 style='margin:4px 0'>{name}</h4>{_turns(head, True)}{more}</div>"

    return (f"<div><b>{html.escape(p.get('method', ''))} iteration {p.get('iteration', '')}</b>: {p['kind']} pair at step "
            f"{p['step']} of <code>{html.escape(p['task_id'])}</code>, <b>{p['winner']}</b> chosen{decided_by(p)}</div>"
            f"<div style='margin:4px 0'><b>Instruction:</b> <span style='white-space:pre-wrap'>{html.escape(instruction)}</span></div>"
            f"<details><summary>shared prefix: the expert's first {steps_before} steps ({len(prefix)} turns)</summary>"
            f"{_turns(prefix)}</details>{rewards}"
            f"<div style='display:flex;gap:12px;margin-top:6px'>{side('chosen (' + p['winner'] + ')', p['chosen'])}"
            f"{side('rejected', p['rejected'])}</div>")


def _results_html(res: dict) -> str:
    from iprkit.stats import format_paired

    rows = [[r["method"], r["iteration"], f"{r['success_mean']:.3f} ± {r['success_std']:.3f}",
             f"{r['reward_mean']:.3f} ± {r['reward_std']:.3f}",
             f"{r['explored_success_mean']:.3f} ± {r['explored_success_std']:.3f}" if "explored_success_mean" in r else "-",
             r["seeds"]] for r in res["table"]]
    out = html_table(["method", "iteration", "held-out success", "held-out reward", "explored tasks: success", "seeds"], rows)
    for key, what in (("paired", "held-out games"), ("paired_explored", "explored train tasks")):
        if res.get(key):
            out += f"<h4>Paired by (seed, task), on the {what}</h4>" + _md_table(format_paired(res[key]))
    return out


def _md_table(md: str) -> str:
    lines = [ln.strip().strip("|").split("|") for ln in md.strip().splitlines() if ln.startswith("|")]
    return html_table([c.strip() for c in lines[0]], [[html.escape(c.strip()) for c in r] for r in lines[2:]])


def _loss_figure(run: RunLayout, seed: int):
    """SFT loss by step, and each DPO iteration's loss by step."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if run.sft(seed).metrics.exists():
        hist = [h for h in read_json(run.sft(seed).metrics).get("log_history", []) if "loss" in h]
        fig.add_trace(go.Scatter(x=[h["step"] for h in hist], y=[h["loss"] for h in hist], name="SFT", mode="lines"))
    for method in run.methods(seed):
        for k in run.iterations(seed, method):
            path = run.iteration(seed, method, k).train_metrics
            hist = [h for h in read_json(path).get("log_history", []) if "loss" in h] if path.exists() else []
            if hist:
                fig.add_trace(go.Scatter(x=[h["step"] for h in hist], y=[h["loss"] for h in hist],
                                         name=f"{method} iteration {k} (DPO + NLL)", mode="lines+markers", yaxis="y2"))
    fig.update_layout(title=f"Training loss, seed {seed}", xaxis_title="optimizer step", yaxis_title="SFT loss",
                      yaxis2={"title": "DPO + NLL loss", "overlaying": "y", "side": "right"}, legend={"orientation": "h"})
    return fig if fig.data else None


def point_html(run: RunLayout, name: str, fig_html) -> str:
    """One grid point's section."""
    from iprkit.figures import heatmap_figure, iteration_figure, learning_curves_figure, pairs_figure
    from iprkit.views import load_iteration, load_pairs, load_results

    parts = [f"<h2 id='{html.escape(name)}'>{html.escape(name)}</h2>"]
    if run.results_json.exists():
        res = load_results(run.root)
        parts += ["<h3>Results</h3>", _results_html(res), fig_html(learning_curves_figure(res["table"])),
                  fig_html(iteration_figure(res["table"], "reward"))]
    else:
        parts.append("<p class='note'>No results yet: the run did not finish (see the notebooks' status above).</p>")
    seed = 0
    if run.seed_dir(seed).exists():
        if (fig := _loss_figure(run, seed)) is not None:
            parts += ["<h3>Training</h3>", fig_html(fig)]
        for method in run.methods(seed):
            its = run.iterations(seed, method)
            if its and run.iteration(seed, method, its[0]).step_rewards.exists() and any(
                    True for _ in read_jsonl(run.iteration(seed, method, its[0]).step_rewards)):
                view = load_iteration(run.root, seed, method, its[0], max_tasks=40)
                parts += [f"<h3>Step rewards: {method}, iteration {its[0]}</h3>", fig_html(heatmap_figure(view, "gap"))]
        if pairs := load_pairs(run.root, seed):
            parts += ["<h3>Pairs</h3>", fig_html(pairs_figure(pairs))]
            for method in dict.fromkeys(p["method"] for p in pairs):
                for kind in ("step", "outcome"):
                    if ex := [p for p in pairs if p["method"] == method and p["kind"] == kind][:1]:
                        parts.append(f"<details><summary>example {kind} pair: {method}</summary>{pair_html(ex[0])}</details>")
    if run.timings.exists():
        t = read_json(run.timings)
        parts += ["<h3>Stage timings</h3>", f"<p>{sum(t.values()) / 60:.1f} minutes in all.</p>",
                  "<details><summary>every stage</summary>" + html_table(
                      ["stage", "seconds"], [[html.escape(k), f"{v:.1f}"] for k, v in t.items()]) + "</details>"]
    if run.config.exists():
        parts += ["<h3>Resolved config</h3>", "<details><summary>config.json</summary><pre>"
                  + html.escape(json.dumps(read_json(run.config), indent=2)) + "</pre></details>"]
    return "".join(parts)


def across_points(layout: BatchLayout, points: list[str]) -> str:
    """The last iteration of each method, one row per grid point."""
    rows, methods = [], []
    for name in points:
        run = layout.point(name)
        if not run.results_json.exists():
            rows.append((name, {}))
            continue
        last = {}
        for r in read_json(run.results_json)["table"]:
            last[r["method"]] = r
        methods += [m for m in last if m not in methods]
        rows.append((name, last))
    cell = lambda r: "-" if r is None else f"{r['success_mean']:.3f} ± {r['success_std']:.3f} (it {r['iteration']})"
    return html_table(["grid point", *methods], [[html.escape(n), *[cell(last.get(m)) for m in methods]] for n, last in rows])


def write_report(layout: BatchLayout, rows: list[dict]) -> Path:
    """``report.html``: the notebooks' status, then every grid point's section, plotly.js embedded once."""
    import plotly.io as pio

    from iprkit.io import atomic_write_text

    first = [True]

    def fig_html(fig) -> str:
        out = pio.to_html(fig, include_plotlyjs=first[0], full_html=False, default_width="100%")
        first[0] = False
        return out

    points = list(dict.fromkeys(r["point"] for r in rows))
    status = html_table(["point", "notebook", "status", "seconds", "error"], [
        [html.escape(r["point"]), r["notebook"],
         "ok" if r.get("ok") else "skipped" if r.get("skipped") else "<b>failed</b>", f"{r.get('duration', 0):.0f}",
         html.escape(f"{(r.get('error') or {}).get('ename', '')} {(r.get('error') or {}).get('evalue', '')[:200]}")]
        for r in rows])
    sections = []
    for name in points:
        try:
            sections.append(point_html(layout.point(name), name, fig_html))
        except Exception as e:  # a report never fails the batch
            sections.append(f"<h2>{html.escape(name)}</h2><p>this section could not be drawn: {html.escape(repr(e))}</p>")
    nav = "".join(f"<a href='#{html.escape(p)}'>{html.escape(p)}</a>" for p in points)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>iprkit report</title><style>{CSS}</style></head>"
            f"<body><h1>iprkit research report</h1><nav>{nav}</nav><h2>Across grid points</h2>"
            f"{across_points(layout, points)}<h2>Notebooks</h2>{status}{''.join(sections)}</body></html>")
    return atomic_write_text(layout.report, page)
