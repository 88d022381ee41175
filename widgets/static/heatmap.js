// Step-reward heatmap: tasks x steps, colour = MC step reward; click a cell for its details.
// Plain DOM, no dependencies, no CDN: works offline in JupyterLab (light and dark themes) and in a bare page.
// Colour scales come from Python (iprkit.figures.MODES), so the widget and its static twins agree.

function colour(v, spec) {
  if (v === null || v === undefined || !spec) return null;
  const [, lo, hi, scale] = spec;
  const t = Math.max(0, Math.min(1, (v - lo) / (hi - lo)));
  for (let i = 1; i < scale.length; i++) {
    const [p0, c0] = scale[i - 1];
    const [p1, c1] = scale[i];
    if (t <= p1) {
      const f = p1 > p0 ? (t - p0) / (p1 - p0) : 0;
      return c0.map((a, k) => Math.round(a + (c1[k] - a) * f));
    }
  }
  return scale[scale.length - 1][1];
}

const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
// dark text on light cells, light text on dark ones (the E / A marks stay readable on any colour)
const ink = (c) => (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2] > 140 ? "#111" : "#fff");

function fmt(est) {
  if (!est) return "n/a";
  if (est.terminal) return `${est.mean.toFixed(2)} (terminal: env reward)`;
  if (est.estimator === "prm") return `${est.mean.toFixed(2)} (step reward model, no rollouts)`;
  const prm = est.prm === null || est.prm === undefined ? "" : `; step reward model ${est.prm.toFixed(2)}`;
  return `${est.mean.toFixed(2)} ± ${est.std.toFixed(2)} (95% CI ${est.ci_low.toFixed(2)}–${est.ci_high.toFixed(2)}, n=${est.n}${prm})`;
}

function esc(s) {
  return String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function side(name, s) {
  const rolls = (s.mc && s.mc.rollouts || []).map((r) =>
    `<li>reward ${Number(r.final_reward).toFixed(2)}: ${esc((r.actions || []).join(" → "))}</li>`).join("");
  return `<div class="iprkit-side"><h4>${name}</h4>
    <div><b>Thought:</b> ${esc(s.thought)}</div><div><b>Action:</b> <code>${esc(s.action)}</code></div>
    <div><b>Observation:</b> ${esc(s.observation)}</div>
    <div><b>MC step reward:</b> ${fmt(s.mc)}</div><div><b>Final reward:</b> ${s.final_reward}</div>
    ${s.continuation ? `<div><b>Continuation:</b> ${esc(s.continuation.join(" → "))}</div>` : ""}
    ${rolls ? `<details><summary>rollouts</summary><ul>${rolls}</ul></details>` : ""}</div>`;
}

export function detailHTML(cell) {
  if (!cell) return "<i>Click a cell to see that step.</i>";
  const pair = cell.pair ? `became a step pair (${cell.pair} chosen)` : "no step pair";
  return `<div class="iprkit-detail-head"><b>${esc(cell.task_id)}</b>, step ${cell.step}: ${pair}</div>
    <div class="iprkit-instr"><b>Instruction:</b> ${esc(cell.instruction)}</div>
    <div class="iprkit-instr"><b>Observation before the step:</b> ${esc(cell.observation)}</div>
    <div class="iprkit-sides">${side("Expert", cell.expert)}${side("Agent", cell.agent)}</div>`;
}

function legendHTML(mode, spec) {
  const [title, lo, hi, scale] = spec;
  const stops = scale.map(([p, c]) => `${rgb(c)} ${Math.round(p * 100)}%`).join(", ");
  const ends = mode === "gap" ? ["agent better", "equal", "expert better"] : ["", "", ""];
  return `<div class="iprkit-legend-bar"><span>${lo}</span><span class="iprkit-ramp" style="background:linear-gradient(to right, ${stops})"></span><span>${hi}</span></div>
    <div class="iprkit-legend-text"><b>${esc(title)}</b>${ends[0] ? ` (red: ${ends[0]}, white: ${ends[1]}, blue: ${ends[2]})` : ""}.
    <span class="iprkit-cell iprkit-missing iprkit-swatch"></span> not scored.
    <b>E</b> / <b>A</b>: a step pair formed here, expert / agent chosen. Click a cell for the step.</div>`;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "iprkit-heatmap";
  const bar = document.createElement("div");
  bar.className = "iprkit-toolbar";
  // built once (a redraw must not take the focus from the filter box while one types)
  bar.innerHTML = `<span class="iprkit-modes">colour:</span>
    <label>sort <select class="iprkit-sort"></select></label>
    <input class="iprkit-query" type="search" placeholder="filter: task id or instruction" size="28">
    <label><input class="iprkit-pairs-only" type="checkbox"> with a step pair</label>
    <span class="iprkit-count"></span>`;
  const modes = bar.querySelector(".iprkit-modes");
  modes.innerHTML += ["gap", "expert", "agent"].map((k) =>
    `<button data-mode="${k}" class="iprkit-mode">${k}</button>`).join("");
  const sortSel = bar.querySelector(".iprkit-sort");
  const query = bar.querySelector(".iprkit-query");
  const pairsOnly = bar.querySelector(".iprkit-pairs-only");
  const count = bar.querySelector(".iprkit-count");
  const legend = document.createElement("div");
  legend.className = "iprkit-legend";
  const scroll = document.createElement("div");
  scroll.className = "iprkit-scroll";
  const grid = document.createElement("table");
  scroll.appendChild(grid);
  const detail = document.createElement("div");
  detail.className = "iprkit-detail";
  root.append(bar, legend, scroll, detail);
  el.appendChild(root);

  const drawBar = () => {
    const mode = model.get("mode");
    bar.querySelectorAll("button.iprkit-mode").forEach((b) => b.classList.toggle("iprkit-active", b.dataset.mode === mode));
    const sorts = model.get("sorts") || {};
    sortSel.innerHTML = Object.entries(sorts).map(([k, what]) => `<option value="${k}">${esc(what)}</option>`).join("");
    sortSel.value = model.get("sort");
    if (document.activeElement !== query) query.value = model.get("query") || "";
    pairsOnly.checked = !!model.get("pairs_only");
  };

  const draw = () => {
    const mode = model.get("mode");
    const spec = (model.get("scales") || {})[mode];
    const m = model.get(mode === "expert" ? "expert_mc" : mode === "agent" ? "agent_mc" : "gap");
    const tasks = model.get("tasks");
    const cells = model.get("cells");
    const sel = model.get("selected") || [];
    const steps = model.get("steps");
    const rows = model.get("rows") || tasks.map((_, r) => r);
    drawBar();
    count.textContent = `${rows.length} of ${tasks.length} tasks`;
    legend.innerHTML = spec ? legendHTML(mode, spec) : "";
    let html = `<thead><tr><th class="iprkit-axis">task \\ step →</th>` +
      Array.from({ length: steps }, (_, s) => `<th>${s}</th>`).join("") + "</tr></thead><tbody>";
    for (const r of rows) {
      const t = tasks[r];
      html += `<tr><th class="iprkit-task">${esc(t)}</th>`;
      for (let s = 0; s < steps; s++) {
        const v = (m[r] || [])[s];
        const c = (cells[r] || [])[s];
        const mark = c && c.pair ? (c.pair === "expert" ? "E" : "A") : "";
        const on = sel[0] === r && sel[1] === s ? " iprkit-on" : "";
        const col = colour(v, spec);
        const style = col ? ` style="background:${rgb(col)};color:${ink(col)}"` : "";
        const title = col ? `${esc(t)}, step ${s}: ${v.toFixed(2)}` : `${esc(t)}, step ${s}: not scored`;
        html += `<td class="iprkit-cell${col ? "" : " iprkit-missing"}${on}" data-row="${r}" data-col="${s}"${style}
          title="${title}">${mark}</td>`;
      }
      html += "</tr>";
    }
    if (!rows.length) html += `<tr><td class="iprkit-none" colspan="${steps + 1}">no task matches the filter</td></tr>`;
    grid.innerHTML = html + "</tbody>";
    const cell = sel.length === 2 ? (cells[sel[0]] || [])[sel[1]] : null;
    detail.innerHTML = detailHTML(cell);
  };

  const send = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  bar.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.iprkit-mode");
    if (b) send("mode", b.dataset.mode);
  });
  sortSel.addEventListener("change", () => send("sort", sortSel.value));
  pairsOnly.addEventListener("change", () => send("pairs_only", pairsOnly.checked));
  let typing = null;
  query.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => send("query", query.value), 250);
  });
  grid.addEventListener("click", (ev) => {
    const td = ev.target.closest("td.iprkit-cell");
    if (td) send("selected", [Number(td.dataset.row), Number(td.dataset.col)]);
  });
  for (const name of ["selected", "mode", "tasks", "cells", "expert_mc", "agent_mc", "gap", "scales", "rows", "sort",
                      "sorts", "query", "pairs_only"]) {
    model.on(`change:${name}`, draw);
  }
  draw();
}

export default { render };
