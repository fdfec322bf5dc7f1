// The page's core: API calls, small DOM helpers, navigation, the jobs panel and job watchers.
// Every page script registers itself with UI.page(name, {show, refresh}); the server is the only
// state: the workspace listing and the job records are fetched again, never kept as truth here.
"use strict";

const UI = {
  pages: {},
  workspace: { facesets: [], models: [], inputs: [], outputs: [] },
  options: null,
  jobs: [],
  jobListeners: [],
};

UI.api = async function (method, url, body) {
  const init = { method, headers: {} };
  if (body instanceof Blob) {
    init.body = body;
    // The server reads an upload only as a file type (a file the browser cannot name is octet-stream).
    init.headers["Content-Type"] = body.type || "application/octet-stream";
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
  return data;
};

UI.el = function (tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

UI.$ = (sel) => document.querySelector(sel);
UI.q = (path) => encodeURIComponent(path);
UI.fmtTime = function (s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : `${m}`) + `:${String(sec).padStart(2, "0")}`;
};
UI.fmt = (v, digits = 4) => (v === null || v === undefined ? "–" : Number(v).toPrecision(digits));

// Form fields -> a job request: empty fields are left out, so the CLI's own defaults apply.
UI.formValues = function (form) {
  const out = {};
  for (const input of form.querySelectorAll("[name]")) {
    const name = input.name;
    if (input.type === "checkbox") { out[name] = input.checked; continue; }
    const v = input.value.trim();
    if (v === "") continue;
    out[name] = input.type === "number" ? Number(v) : v;
  }
  return out;
};

UI.fillSelect = function (select, items, { value = (x) => x, label = (x) => x, empty = null } = {}) {
  const keep = select.value;
  select.replaceChildren();
  if (empty !== null) select.append(UI.el("option", { value: "" }, empty));
  for (const it of items) select.append(UI.el("option", { value: value(it) }, label(it)));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
};

UI.page = function (name, handlers) { UI.pages[name] = handlers; };

UI.show = function () {
  const name = (location.hash || "#facesets").slice(1);
  const page = UI.pages[name] ? name : "facesets";
  for (const s of document.querySelectorAll(".page")) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  UI.current = page;
  if (UI.pages[page].show) UI.pages[page].show();
};

// Resolved once the form defaults have arrived: pages render nothing before that.
UI.ready = new Promise((resolve) => { UI.setReady = resolve; });

UI.refresh = async function () {
  await UI.ready;
  UI.workspace = await UI.api("GET", "/api/workspace");
  UI.$("#ws-root").textContent = UI.workspace.root;
  const names = (xs) => xs.map((x) => x.name);
  for (const s of document.querySelectorAll(".sel-facesets")) {
    const fresh = !s.value;
    UI.fillSelect(s, names(UI.workspace.facesets));
    // B starts on the second faceset: training A against itself is never what is meant.
    if (fresh && s.name === "b" && s.options.length > 1) s.selectedIndex = 1;
  }
  // A pretrained model (a pool, no pair) draws no one person: only "start from" on the Train page offers it.
  UI.pairModels = UI.workspace.models.filter((m) => !m.pool);
  for (const s of document.querySelectorAll(".sel-models")) UI.fillSelect(s, names(UI.pairModels));
  for (const s of document.querySelectorAll(".sel-mask-models")) UI.fillSelect(s, names(UI.workspace.mask_models), { empty: "(none)" });
  const videos = UI.workspace.inputs.filter((f) => f.kind === "video");
  for (const s of document.querySelectorAll(".sel-videos")) UI.fillSelect(s, videos.map((f) => f.path), { empty: "(none)" });
  for (const p of Object.values(UI.pages)) if (p.refresh) p.refresh();
};

// Uploads go one file at a time as the raw body, so the server can stop a too-big one mid-way.
UI.upload = async function (files, status) {
  const done = [];
  for (const f of files) {
    status.textContent = `uploading ${f.name} (${Math.round(f.size / 1024)} KiB)…`;
    status.className = "status";
    try {
      done.push(await UI.api("PUT", `/api/upload?name=${UI.q(f.name)}`, f));
    } catch (e) {
      status.textContent = e.message;
      status.className = "status error";
      await UI.refresh();
      return done;
    }
  }
  status.textContent = done.length ? `uploaded ${done.map((d) => d.name).join(", ")}` : "";
  await UI.refresh();
  return done;
};

UI.dropZone = function (zone, onFiles) {
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer.files.length) onFiles([...e.dataTransfer.files]);
  });
  const input = zone.querySelector("input[type=file]");
  if (input) input.addEventListener("change", () => { if (input.files.length) onFiles([...input.files]); input.value = ""; });
};

UI.submit = async function (spec, watchBox, onEnd) {
  try {
    const job = await UI.api("POST", "/api/jobs", spec);
    UI.watch(job.id, watchBox, onEnd);
    return job;
  } catch (e) {
    watchBox.replaceChildren(UI.el("div", { class: "status error", text: e.message }));
    return null;
  }
};

// A job's state, progress bar and the end of its log, live from the event stream.
UI.renderJob = function (box, job) {
  const p = job.progress;
  const bar = UI.el("div", { class: "bar" }, UI.el("div", { style: `width:${p && p.fraction !== null ? Math.round(p.fraction * 100) : (job.state === "done" ? 100 : 0)}%` }));
  const what = p ? `${p.desc ? p.desc + ": " : ""}${p.n}${p.total ? "/" + p.total : ""} ${p.rate || ""} · ETA ${UI.fmtTime(p.eta_s)}` : "";
  const actions = [];
  if (job.state === "queued") actions.push(UI.el("button", { class: "small", onclick: () => UI.stop(job.id) }, "Cancel"));
  if (job.state === "running") actions.push(UI.el("button", { class: "small", onclick: () => UI.stop(job.id) }, job.stops ? "Abort" : "Stop"));
  box.replaceChildren(...[
    UI.el("div", { class: "job-head" }, UI.el("span", { class: `state ${job.state}`, text: job.state }),
      UI.el("span", { class: "job-title", text: job.title }), ...actions),
    job.state === "running" ? bar : null,
    what ? UI.el("div", { class: "status", text: what }) : null,
    job.message ? UI.el("div", { class: `status ${job.state === "failed" ? "error" : ""}`, text: job.message }) : null,
    UI.el("pre", { class: "log", text: (job.log || []).slice(-40).join("\n") }),
  ].filter(Boolean));
  box.dataset.job = job.id;
  box.dataset.state = job.state;
};

UI.watch = function (jobId, box, onEnd) {
  if (box._source) box._source.close();
  const source = new EventSource(`/api/events?job=${UI.q(jobId)}`);
  box._source = source;
  let ended = false;
  source.addEventListener("job", (e) => {
    const job = JSON.parse(e.data);
    UI.renderJob(box, job);
    if (["done", "failed", "stopped", "cancelled"].includes(job.state) && !ended) {
      ended = true;
      source.close();
      UI.refresh().then(() => onEnd && onEnd(job));
    }
  });
};

UI.stop = async function (jobId) {
  try { await UI.api("POST", `/api/jobs/${UI.q(jobId)}/stop`); } catch (e) { alert(e.message); }
};

UI.renderJobs = function () {
  const list = UI.$("#jobs-list");
  const rows = UI.jobs.slice(0, 25).map((j) => UI.el("div", { class: "job-row", "data-id": j.id, onclick: () => UI.watch(j.id, UI.$("#jobs-watch")) },
    UI.el("span", { class: `state ${j.state}`, text: j.state === "queued" ? `queued #${j.queue_position}` : j.state }),
    UI.el("span", { class: "job-title", text: j.title }),
    j.state === "queued" ? UI.el("button", { class: "small", onclick: (e) => { e.stopPropagation(); UI.stop(j.id); } }, "Cancel") : null,
    j.state === "running" ? UI.el("button", { class: "small", onclick: (e) => { e.stopPropagation(); UI.stop(j.id); } }, "Stop") : null));
  list.replaceChildren(...(rows.length ? rows : [UI.el("div", { class: "hint", text: "no jobs yet" })]));
};

UI.listenJobs = function () {
  const source = new EventSource("/api/events");
  let finished = new Set();
  source.addEventListener("jobs", (e) => {
    UI.jobs = JSON.parse(e.data).jobs;
    UI.renderJobs();
    const now = new Set(UI.jobs.filter((j) => !["queued", "running"].includes(j.state)).map((j) => j.id));
    const changed = [...now].some((id) => !finished.has(id));
    finished = now;
    if (changed) UI.refresh();
    for (const f of UI.jobListeners) f(UI.jobs);
  });
};

// Selects marked data-choices="KIND.FIELD" list the choices the job request (and so the CLI) declares;
// a form marked data-job="KIND" gets an input for every option of that job it does not lay out itself
// (data-skip names those it handles another way), so a newly declared option shows up with no edit here.
UI.fillChoices = () => {
  for (const s of document.querySelectorAll("select[data-choices]")) {
    const [kind, field] = s.dataset.choices.split(".");
    for (const v of ((UI.options.choices || {})[kind] || {})[field] || []) s.append(UI.el("option", { text: v }));
  }
  for (const form of document.querySelectorAll("form[data-job]")) {
    const skip = (form.dataset.skip || "").split(" ");
    // Generated inputs go in the grid before the first full-width row or the buttons.
    const before = [...form.children].find((c) => c.matches(".wide, button[type=submit], .buttons")) || null;
    for (const [name, f] of Object.entries((UI.options.fields || {})[form.dataset.job] || {})) {
      if (skip.includes(name) || form.querySelector(`[name="${name}"]`)) continue;
      const label = name.replaceAll("_", " ");
      const shown = f.default === null || f.default === undefined || f.default === "" ? "default" : `default: ${f.default}`;
      let input;
      if (f.type === "boolean") {
        form.insertBefore(UI.el("label", { class: "check", title: f.help }, UI.el("input", { name, type: "checkbox" }), " " + label), before);
        continue;
      } else if (f.enum) {
        input = UI.el("select", { name }, UI.el("option", { value: "" }, `(${shown})`), f.enum.map((v) => UI.el("option", { text: v })));
      } else if (f.type === "integer" || f.type === "number") {
        input = UI.el("input", { name, type: "number", step: f.type === "number" ? "any" : null, min: f.min, max: f.max, placeholder: shown });
      } else if (f.type === "string") {
        input = UI.el("input", { name, placeholder: shown });
      } else continue;
      form.insertBefore(UI.el("label", { title: f.help }, label + " ", input), before);
    }
  }
};

window.addEventListener("hashchange", UI.show);
window.addEventListener("DOMContentLoaded", async () => {
  try {
    UI.options = await UI.api("GET", "/api/options");
    UI.fillChoices();
    UI.setReady();
    await UI.refresh();
  } catch (e) {
    document.body.prepend(UI.el("div", { class: "status error", text: e.message }));
  }
  UI.listenJobs();
  UI.show();
});
