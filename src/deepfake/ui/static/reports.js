// Evaluate and sweep: run them, then read their report.md / results.md (tables and plots, rendered
// by the server) and the sweep's ranked table from results.csv, sortable by any column.
"use strict";
(function () {
  const { el, $, api, q } = UI;
  let selected = null;
  let sortBy = null, sortUp = false;

  function renderList() {
    const reports = UI.workspace.outputs.filter((f) => ["report", "sweep", "timeline"].includes(f.kind));
    const chips = reports.map((r) => el("button", {
      class: `chip ${r.path === selected ? "active" : ""}`, "data-path": r.path,
      onclick: () => { selected = r.path; sortBy = null; renderList(); load(); },
    }, `${r.name} (${{ sweep: "sweep", timeline: "timeline", report: "evaluate" }[r.kind]})`));
    $("#report-list").replaceChildren(...(chips.length ? chips : [el("span", { class: "hint", text: "no report yet" })]));
  }

  // Four significant digits on the page; the full value stays in results.csv and the cell's tooltip.
  const shown = (v) => (v !== "" && isFinite(Number(v)) && !Number.isInteger(Number(v)) ? Number(v).toPrecision(4) : v);

  function rankedTable(rows) {
    if (!rows || !rows.length) return null;
    const cols = Object.keys(rows[0]).filter((c) => !["overrides", "error", "baseline"].includes(c));
    const num = (v) => (v === "" || isNaN(Number(v)) ? null : Number(v));
    const sorted = [...rows];
    if (sortBy) {
      sorted.sort((a, b) => {
        const x = num(a[sortBy]), y = num(b[sortBy]);
        const c = x !== null && y !== null ? x - y : String(a[sortBy]).localeCompare(String(b[sortBy]));
        return sortUp ? c : -c;
      });
    }
    const head = cols.map((c) => el("th", { class: "sortable", onclick: () => { sortUp = sortBy === c ? !sortUp : false; sortBy = c; load(); } },
      c + (sortBy === c ? (sortUp ? " ▲" : " ▼") : "")));
    const body = sorted.map((r) => el("tr", { class: r.baseline === "True" || r.baseline === "true" ? "baseline" : "" },
      cols.map((c) => el("td", { text: shown(r[c]), title: r[c] })), el("td", { text: r.overrides || "" })));
    return el("table", { class: "report-table ranked", id: "ranked-table" },
      el("thead", {}, el("tr", {}, head, el("th", { text: "overrides" }))), el("tbody", {}, body));
  }

  async function load() {
    if (!selected) return;
    try {
      const r = await api("GET", `/api/reports?path=${q(selected)}`);
      const ranked = rankedTable(r.ranked);
      $("#report-ranked").replaceChildren(...(ranked ? [el("h3", { text: "Ranked variants (click a column to sort)" }), ranked] : []));
      $("#report-view").innerHTML = r.html; // rendered and escaped by the server (markdown.py)
      if (r.timeline) {
        const marks = Object.entries(r.timeline.marks).filter(([, s]) => s !== null).map(([k, s]) => `${k}: step ${s}`);
        $("#report-view").append(el("h3", { text: "Timeline: the same held-out faces at every kept step" }),
          el("div", { class: "hint", text: marks.join(" · ") || "no step marked" }),
          el("img", { class: "report-plot", id: "report-timeline", src: r.timeline.url, alt: "timeline" }));
      }
    } catch (e) {
      $("#report-view").replaceChildren(el("div", { class: "status error", text: e.message }));
    }
  }

  function runner(form, watch, build) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const spec = build(UI.formValues(form));
      await UI.submit(spec, watch, (job) => {
        if (job.state === "done" && job.targets.output) { selected = job.targets.output; renderList(); load(); }
      });
    });
  }

  UI.page("reports", {
    show: load,
    refresh() {
      const base = $("#sweep-base");
      if (!base.options.length) {
        UI.fillSelect(base, Object.keys(UI.options.presets), { empty: `(default: ${UI.options.sweep.base})` });
        UI.fillSelect($("#sweep-rank"), UI.options.sweep.rank_by, { empty: "(default: ssim)" });
        $("#sweep-form [name=steps]").placeholder = UI.options.sweep.steps;
      }
      renderList();
    },
  });

  window.addEventListener("DOMContentLoaded", () => {
    runner($("#eval-form"), $("#eval-watch"), (v) => ({ kind: "evaluate", ...v }));
    runner($("#sweep-form"), $("#sweep-watch"), (v) => ({
      kind: "sweep", ...v, grid: (v.grid || "").split("\n").map((s) => s.trim()).filter(Boolean),
    }));
  });
})();
