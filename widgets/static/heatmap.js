// Step-reward heatmap: tasks x steps, colour = MC step reward; click a cell for its details.
// Plain DOM, no dependencies, no CDN: works offline in JupyterLab and in a bare page.
function color(v, mode) {
  if (v === null || v === undefined) return "#eee";
  if (mode === "gap") {  // blue: expert better, red: agent better
    const t = Math.max(-1, Math.min(1, v));
    const a = Math.round(255 * (1 - Math.abs(t)));
    return t >= 0 ? `rgb(${a},${a},255)` : `rgb(255,${a},${a})`;
  }
  const t = Math.max(0, Math.min(1, v));
  return `rgb(${Math.round(255 * (1 - t))},${Math.round(160 + 95 * t)},${Math.round(255 * (1 - t))})`;
}

function fmt(est) {
  if (!est) return "n/a";
  if (est.terminal) return `${est.mean.toFixed(2)} (terminal: env reward)`;
  return `${est.mean.toFixed(2)} ± ${est.std.toFixed(2)} (95% CI ${est.ci_low.toFixed(2)}–${est.ci_high.toFixed(2)}, n=${est.n})`;
}

function esc(s) {
  return String(s ?? "").replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]);
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

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "iprkit-heatmap";
  const grid = document.createElement("table");
  const detail = document.createElement("div");
  detail.className = "iprkit-detail";
  root.append(grid, detail);
  el.appendChild(root);

  const draw = () => {
    const mode = model.get("mode");
    const m = model.get(mode === "expert" ? "expert_mc" : mode === "agent" ? "agent_mc" : "gap");
    const tasks = model.get("tasks");
    const cells = model.get("cells");
    const sel = model.get("selected") || [];
    const steps = model.get("steps");
    let html = "<tr><th></th>" + Array.from({ length: steps }, (_, s) => `<th>${s}</th>`).join("") + "</tr>";
    tasks.forEach((t, r) => {
      html += `<tr><th class="iprkit-task">${esc(t)}</th>`;
      for (let s = 0; s < steps; s++) {
        const v = (m[r] || [])[s];
        const c = (cells[r] || [])[s];
        const mark = c && c.pair ? (c.pair === "expert" ? "E" : "A") : "";
        const on = sel[0] === r && sel[1] === s ? " iprkit-on" : "";
        html += `<td class="iprkit-cell${on}" data-row="${r}" data-col="${s}" style="background:${color(v, mode)}"
          title="${v === null || v === undefined ? "" : v.toFixed(2)}">${mark}</td>`;
      }
      html += "</tr>";
    });
    grid.innerHTML = html;
    const cell = sel.length === 2 ? (cells[sel[0]] || [])[sel[1]] : null;
    detail.innerHTML = detailHTML(cell);
  };

  grid.addEventListener("click", (ev) => {
    const td = ev.target.closest("td.iprkit-cell");
    if (!td) return;
    model.set("selected", [Number(td.dataset.row), Number(td.dataset.col)]);
    model.save_changes();
  });
  for (const name of ["selected", "mode", "tasks", "cells", "expert_mc", "agent_mc", "gap"]) {
    model.on(`change:${name}`, draw);
  }
  draw();
}

export default { render };
