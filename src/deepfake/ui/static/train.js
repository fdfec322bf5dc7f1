// Train: start, resume and stop a pair's run or a pretraining run (the Pretrain card); live loss curves
// (server-drawn SVG), throughput, device busy, ETA, the preview grids as they are written (with their
// history on a slider) and the checkpoints, of the model named in the form used last.
"use strict";
(function () {
  const { el, $, api, q } = UI;
  const FORMS = { train: "train", pretrain: "pretrain" }; // form prefix -> the job kind it starts
  let view = null;
  let followLatest = true;
  const watching = { train: null, pretrain: null };
  let shown = "train"; // whose model the live card follows
  let loading = false;

  const nameIn = (form) => $(`#${form}-form [name=model]`).value.trim();
  const modelName = () => nameIn(shown);
  const modelOf = (name) => UI.workspace.models.find((m) => m.name === name);
  const modelExists = (name) => !!modelOf(name);
  // Either kind of run writes the folder: a run of one blocks both forms on that name.
  const activeJob = (name) => UI.jobs.find((j) => Object.values(FORMS).includes(j.kind) && j.targets.model === name
    && ["running", "queued"].includes(j.state));

  // A folder resumes only as its own kind (the CLI refuses the other): say so before a click fails.
  function kindProblem(form, m) {
    if (!m) return "";
    if (form === "train" && m.pool) return `${m.name} is a pretraining run: resume it on the Pretrain card, or pick it under "start from" for a new model`;
    if (form === "pretrain" && !m.pool) return `${m.name} is a pair's model: pretrain into a new name`;
    return "";
  }

  function updateButtons() {
    for (const form of Object.keys(FORMS)) {
      const name = nameIn(form);
      const job = activeJob(name);
      const problem = kindProblem(form, modelOf(name));
      $(`#${form}-start`).textContent = modelExists(name) ? "Resume" : "Start";
      $(`#${form}-start`).disabled = !!job || !!problem;
      $(`#${form}-kind`).textContent = problem;
      $(`#${form}-stop`).disabled = !(job && job.state === "running");
      $(`#${form}-stop`).textContent = job && job.stops ? "Abort (second signal)" : "Stop (save)";
      if (form === "train") { // a resumed run keeps the start it was made from
        for (const sel of [$("#train-from"), $("#train-form [name=reset]")]) sel.disabled = modelExists(name);
      }
      if (job && job.kind === FORMS[form] && watching[form] !== job.id) {
        watching[form] = job.id;
        UI.watch(job.id, $(`#${form}-watch`), () => { watching[form] = null; load(); });
      }
    }
  }

  function presetInfo() {
    const name = $("#train-preset").value;
    const p = name && UI.options.presets[name];
    $("#train-preset-info").textContent = p
      ? `${name}: ${p.resolution} px ${p.arch}, ${p.steps} steps, batch ${p.batch}, lr ${p.lr}, preview every ${p.preview_every}, validate every ${p.val_every}, save every ${p.save_every}, GAN weight ${p.gan_weight}`
      : $("#train-from").value && !modelExists(nameIn("train"))
        ? `no preset: the run takes ${$("#train-from").value}'s preset and network (train --from's default)`
        : "no preset: a resumed folder keeps its own config; a new one starts from original64";
  }

  // Starting from a model, its own preset and network are the default: another preset must match them.
  function startFrom() {
    if ($("#train-from").value) $("#train-preset").value = "";
    presetInfo();
  }

  function renderStats(v) {
    $("#train-live-title").textContent = v.pool.length ? `${v.name}: pretraining on ${v.pool.join(", ")}` : v.name;
    const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
    const items = [
      ["step", `${v.step}${v.target ? " / " + v.target : ""}`], ["loss", UI.fmt(v.loss)], ["validation", UI.fmt(v.val_loss)],
      ["faces/s", v.faces_per_s === null ? "–" : Math.round(v.faces_per_s)], ["device busy", pct(v.gpu_busy)],
      ["ETA", UI.fmtTime(v.eta_s)], ["preset", v.preset || "–"],
      ["over-fitting", v.overfit_step === null ? "not seen" : `from step ${v.overfit_step}`],
    ];
    $("#train-stats").replaceChildren(...items.map(([k, val]) =>
      el("span", { "data-stat": k }, el("b", { text: k + " " }), String(val))));
  }

  function renderPreviews(v) {
    const slider = $("#train-history");
    const n = v.previews.length;
    slider.max = Math.max(0, n - 1);
    if (followLatest) slider.value = slider.max;
    showPreview();
  }

  function showPreview() {
    const slider = $("#train-history");
    const p = view && view.previews[Number(slider.value)];
    const img = $("#train-preview");
    if (!p) { img.removeAttribute("src"); $("#train-history-step").textContent = "no preview yet"; return; }
    if (img.getAttribute("src") !== p.url) img.src = p.url;
    img.dataset.step = p.step;
    $("#train-history-step").textContent = `step ${p.step} (${Number(slider.value) + 1} of ${view.previews.length})`;
  }

  // Every step the folder keeps weights for (timeline/ steps are never rotated away, checkpoints/
  // snapshots are), the best one (best/, the validation minimum) and the latest weights.
  function renderCheckpoints(v) {
    const box = $("#train-checkpoints");
    // Scaled to the run so far, not its target: a few early checkpoints of a long run stay apart.
    const last = Math.max(v.step || 0, ...v.checkpoints, 1);
    const bestStep = v.best ? v.best.step : null;
    const marks = v.kept.map((k) => el("span", {
      class: `tick ${k.step === bestStep ? "best" : ""} ${k.timeline ? "kept" : ""}`, style: `left:${(100 * k.step) / last}%`,
      "data-step": k.step, title: `${k.timeline ? "timeline" : "snapshot"} at step ${k.step}`,
    }, k.step === bestStep ? `★ ${k.step}` : String(k.step)));
    if (bestStep !== null && !v.checkpoints.includes(bestStep)) {
      marks.push(el("span", { class: "tick best", style: `left:${(100 * bestStep) / last}%`, "data-step": bestStep, title: "best/" }, `★ ${bestStep}`));
    }
    const parts = [v.kept.length ? `${v.kept.length} kept step(s): ${v.kept.filter((k) => k.timeline).length} on the timeline (keep every ${v.keep_every || "–"}), the rest rotating snapshots` : "no checkpoint yet"];
    parts.push(v.best ? `best: step ${bestStep}${v.best.val_loss !== null ? ` (validation ${UI.fmt(v.best.val_loss)})` : ""}` : "no best checkpoint yet (written at validations)");
    if (v.last_saved !== null) parts.push(`latest weights: step ${v.last_saved}`);
    box.replaceChildren(el("div", { class: "line" }, el("span", { class: "now", style: `left:${(100 * (v.step || 0)) / last}%` }), ...marks),
      el("div", { class: "hint", id: "train-best", "data-best": bestStep === null ? "" : bestStep, text: parts.join("; ") }));
    const pics = v.timelines || [];
    const t = pics[0];
    const marked = t ? Object.entries(t.marks || {}).filter(([, s]) => s !== null).map(([k, s]) => `${k} ${s}`).join(", ") : "";
    $("#train-timeline").replaceChildren(...(t ? [
      el("div", { class: "hint", text: `${t.path}: steps ${t.steps.join(", ")}${marked ? "; marked " + marked : ""}` }),
      el("img", { id: "train-timeline-img", class: "report-plot", src: t.url, alt: "timeline" })] : []));
  }

  async function timeline() {
    const form = $("#train-form");
    const spec = { kind: "evaluate", model: modelName(), a: form.a.value, b: form.b.value, timeline: true };
    await UI.submit(spec, $("#train-timeline-watch"), () => load());
  }

  async function load() {
    const name = modelName();
    updateButtons();
    if (!modelExists(name) && activeJob(name)) await UI.refresh(); // a new run's folder appears once it starts
    if (!modelExists(name) || loading) {
      if (!modelExists(name)) { view = null; $("#train-live").hidden = true; }
      return;
    }
    loading = true;
    try {
      const skip = Number($("#train-skip").value) || 0;
      const smooth = $("#train-smooth").value;
      view = await api("GET", `/api/models/${q(name)}?skip=${skip}&smooth=${smooth}`);
    } catch (e) {
      $("#train-stats").replaceChildren(el("span", { class: "status error", text: e.message }));
      return;
    } finally {
      loading = false;
    }
    $("#train-live").hidden = false;
    renderStats(view);
    $("#train-loss").innerHTML = view.charts.loss; // server-drawn SVG, text escaped there
    $("#train-speed").innerHTML = view.charts.speed;
    $("#train-busy").innerHTML = view.charts.busy;
    renderPreviews(view);
    renderCheckpoints(view);
    // A folder resumes with the facesets it was started on: offer those again.
    const form = $("#train-form");
    const last = view.jobs.find((j) => j.spec && j.spec.a);
    if (shown === "train" && last && !activeJob(name)) {
      if (!form.a.dataset.touched) form.a.value = last.spec.a;
      if (!form.b.dataset.touched) form.b.value = last.spec.b;
    }
    const pool = $("#pretrain-facesets");
    if (shown === "pretrain" && view.pool.length && !activeJob(name) && !pool.dataset.touched) {
      for (const box of pool.querySelectorAll("input")) box.checked = view.pool.includes(box.value);
    }
  }

  function renderPool() {
    const box = $("#pretrain-facesets");
    const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    const rows = UI.workspace.facesets.map((f) => el("label", { class: "check" },
      el("input", { type: "checkbox", value: f.name, checked: checked.has(f.name) }), ` ${f.name} `,
      el("span", { class: "hint", text: `${f.faces} faces` })));
    box.replaceChildren(...(rows.length ? rows : [el("div", { class: "hint", text: "no facesets yet: extract some on the Facesets page" })]));
  }

  async function start(form, ev) {
    ev.preventDefault();
    const values = UI.formValues($(`#${form}-form`));
    const spec = { kind: FORMS[form], ...values, set: (values.set || "").split("\n").map((s) => s.trim()).filter(Boolean) };
    if (form === "train" && modelExists(values.model)) { delete spec.start_from; delete spec.reset; } // a resume keeps its start
    if (form === "pretrain") {
      spec.facesets = [...$("#pretrain-facesets").querySelectorAll("input:checked")].map((i) => i.value);
      if (!spec.facesets.length) {
        $("#pretrain-watch").replaceChildren(el("div", { class: "status error", text: "tick at least one faceset for the pool" }));
        return;
      }
    }
    shown = form;
    followLatest = true;
    const job = await UI.submit(spec, $(`#${form}-watch`), () => { watching[form] = null; load(); });
    if (job) watching[form] = job.id;
    updateButtons();
    load();
  }

  async function stop(form) {
    const job = activeJob(nameIn(form));
    if (job) await UI.stop(job.id);
  }

  function fillPresets(sel) {
    if (sel.options.length) return;
    UI.fillSelect(sel, Object.keys(UI.options.presets), { empty: "(folder's own / original64)" });
    sel.value = "tiny";
  }

  UI.page("train", {
    show: load,
    refresh() {
      UI.fillSelect($("#train-models"), UI.workspace.models.map((m) => m.name));
      UI.fillSelect($("#train-from"), UI.workspace.models, { value: (m) => m.name,
        label: (m) => (m.pool ? `${m.name} (pretrained on ${m.pool} faceset${m.pool > 1 ? "s" : ""})` : m.name), empty: "(random weights)" });
      if (!$("#train-preset").options.length) { fillPresets($("#train-preset")); presetInfo(); }
      fillPresets($("#pretrain-preset"));
      renderPool();
      updateButtons();
    },
  });

  window.addEventListener("DOMContentLoaded", () => {
    for (const form of Object.keys(FORMS)) {
      $(`#${form}-form`).addEventListener("submit", (ev) => start(form, ev));
      $(`#${form}-stop`).addEventListener("click", () => stop(form));
      $(`#${form}-form [name=model]`).addEventListener("change", () => { shown = form; followLatest = true; load(); });
    }
    $("#pretrain-facesets").addEventListener("change", (e) => { e.currentTarget.dataset.touched = "1"; });
    $("#train-timeline-run").addEventListener("click", timeline);
    $("#train-preset").addEventListener("change", presetInfo);
    $("#train-from").addEventListener("change", startFrom);
    for (const s of ["a", "b"]) $(`#train-form [name=${s}]`).addEventListener("change", (e) => { e.target.dataset.touched = "1"; });
    $("#train-skip").addEventListener("change", load);
    $("#train-smooth").addEventListener("input", () => { $("#train-smooth-v").textContent = $("#train-smooth").value; });
    $("#train-smooth").addEventListener("change", load);
    $("#train-history").addEventListener("input", () => {
      followLatest = Number($("#train-history").value) === Number($("#train-history").max);
      showPreview();
    });
    UI.jobListeners.push(() => { if (UI.current === "train") updateButtons(); });
    // Live while a run is going: the curves and previews are re-read every 2 s (cheap: one CSV).
    setInterval(() => {
      if (UI.current === "train" && !document.hidden && (activeJob(modelName()) || !view)) load();
    }, 2000);
  });
})();
