// Facesets: upload or pick inputs, run extract, and for each faceset its counts, contact sheet, pose
// histogram and the faces `deepfake faceset clean` would drop, previewed before anything moves.
"use strict";
(function () {
  const { el, $, api, q } = UI;
  let selected = null;
  const infoAsked = new Set(); // faceset@manifest-time: ask for `faceset info` once per manifest version
  const typed = {}; // thresholds as typed: the detail view is redrawn when a job ends, the form keeps them

  function renderInputs() {
    const box = $("#inputs-list");
    const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
    const rows = UI.workspace.inputs.filter((f) => ["image", "video", "folder"].includes(f.kind)).map((f) =>
      el("label", { class: "check" }, el("input", { type: "checkbox", value: f.path, checked: checked.has(f.path) }),
        ` ${f.name} `, el("span", { class: "hint", text: f.kind + (f.bytes ? ` · ${Math.round(f.bytes / 1024)} KiB` : "") })));
    box.replaceChildren(...(rows.length ? rows : [el("div", { class: "hint", text: "inputs/ is empty: upload something" })]));
    const images = UI.workspace.inputs.filter((f) => f.kind === "image").map((f) => f.path);
    UI.fillSelect($("#extract-reference"), images, { empty: "(anyone)" });
  }

  function renderList() {
    const chips = UI.workspace.facesets.map((f) => el("button", {
      class: `chip ${f.name === selected ? "active" : ""}`, "data-name": f.name,
      onclick: () => { selected = f.name; renderList(); loadDetail(); },
    }, `${f.name} · ${f.faces} faces`));
    $("#faceset-list").replaceChildren(...(chips.length ? chips : [el("span", { class: "hint", text: "no faceset yet" })]));
  }

  function thresholdsForm(defaults) {
    const field = (name, label) => el("label", {}, label, el("input", {
      name, type: "text", size: 6, oninput: (e) => { typed[name] = e.target.value; },
      value: name in typed ? typed[name] : defaults[name] === null ? "none" : String(defaults[name]),
    }));
    return el("form", { id: "clean-form", class: "grid-form" },
      field("min_blur", "min blur score"), field("blur_fraction", "blur fraction of median"),
      field("max_yaw", "max |yaw|°"), field("max_pitch", "max |pitch|°"), field("max_roll", "max |roll|°"),
      field("max_identity", "max identity distance"),
      el("div", { class: "buttons" }, el("button", { type: "button", id: "clean-preview" }, "Preview"),
        el("button", { type: "button", id: "clean-apply", disabled: true }, "Clean")));
  }

  function readThresholds() {
    const out = {};
    for (const i of $("#clean-form").querySelectorAll("input")) {
      const v = i.value.trim().toLowerCase();
      out[i.name] = v === "" || v === "none" || v === "off" ? null : Number(v);
    }
    return out;
  }

  function facesGrid(faces, empty) {
    if (!faces.length) return el("div", { class: "hint", text: empty });
    return el("div", { class: "faces" }, faces.slice(0, 120).map((f) =>
      el("figure", { class: "face" }, el("img", { src: f.url, alt: f.file, loading: "lazy" }),
        el("figcaption", { text: f.reason }))));
  }

  function infoText(name) {
    const job = UI.jobs.find((j) => j.kind === "faceset_info" && j.targets.faceset === name && j.state === "done");
    const box = el("pre", { class: "info-text", text: "" });
    if (job) api("GET", `/api/jobs/${q(job.id)}`).then((j) => { box.textContent = j.log.filter((l) => !l.startsWith("saved:")).join("\n"); });
    return box;
  }

  async function loadDetail() {
    const box = $("#faceset-detail");
    if (!selected) { box.replaceChildren(); return; }
    let v;
    try { v = await api("GET", `/api/facesets/${q(selected)}`); } catch (e) {
      box.replaceChildren(el("div", { class: "status error", text: e.message }));
      return;
    }
    // A redraw of the same faceset (its info job ended) keeps the clean preview shown (the thresholds
    // typed are kept by thresholdsForm).
    const shownResult = box.dataset.name === v.name ? $("#clean-result") : null;
    const watch = el("div", { class: "watch", id: "faceset-watch" });
    const listed = UI.workspace.facesets.find((f) => f.name === v.name);
    const key = `${v.name}@${listed ? listed.modified : ""}`;
    if (v.info_stale && !infoAsked.has(key)) {
      infoAsked.add(key);
      UI.submit({ kind: "faceset_info", faceset: v.name }, watch, (job) => { if (job.state === "done") loadDetail(); });
    }
    const sources = Object.entries(v.sources).map(([s, n]) => `${n} from ${s}`).join(", ");
    const flagged = v.flagged;
    box.replaceChildren(
      el("h3", { text: `${v.name}` }),
      el("div", { class: "stats" },
        el("span", { text: `${v.faces} faces` }), el("span", { text: `${v.size} px, coverage ${v.coverage}` }),
        el("span", { text: `${v.video_frames} from video frames, ${v.stills} from stills` }), el("span", { text: sources })),
      infoText(v.name), watch,
      el("div", { class: "cols" },
        el("figure", {}, v.plots.contact_sheet ? el("img", { src: v.plots.contact_sheet, alt: "contact sheet", id: "contact-sheet" }) : el("span", { class: "hint", text: "contact sheet: being made…" }), el("figcaption", { text: "contact sheet (blur score on each face)" })),
        el("figure", {}, v.plots.pose_histogram ? el("img", { src: v.plots.pose_histogram, alt: "pose histogram", id: "pose-histogram" }) : el("span", { class: "hint", text: "pose histogram: being made…" }), el("figcaption", { text: "head pose" }))),
      el("h3", { text: `Flagged with the default thresholds: ${flagged.faces.length} of ${v.faces}` }),
      facesGrid(flagged.faces, "nothing flagged: no blurry faces, extreme poses or other people"),
      el("h3", { text: "Clean" }), thresholdsForm(UI.options.clean),
      shownResult || el("div", { id: "clean-result" }));
    box.dataset.name = v.name;
    if (shownResult) $("#clean-apply").disabled = !shownResult.querySelector(".face");
    $("#clean-preview").onclick = preview;
    $("#clean-apply").onclick = apply;
    UI.labels.open(v.name);
  }

  async function preview() {
    const out = $("#clean-result");
    try {
      const r = await api("POST", `/api/facesets/${q(selected)}/clean-preview`, readThresholds());
      out.replaceChildren(el("pre", { class: "info-text", id: "clean-lines", text: r.lines.join("\n") }),
        facesGrid(r.faces, "these thresholds drop nothing"));
      $("#clean-apply").disabled = r.faces.length === 0;
    } catch (e) {
      out.replaceChildren(el("div", { class: "status error", text: e.message }));
    }
  }

  async function apply() {
    $("#clean-apply").disabled = true;
    const watch = el("div", { class: "watch" });
    $("#clean-result").replaceChildren(watch);
    await UI.submit({ kind: "faceset_clean", faceset: selected, thresholds: readThresholds() }, watch, () => loadDetail());
  }

  async function extract(ev) {
    ev.preventDefault();
    const form = $("#extract-form");
    const values = UI.formValues(form);
    const inputs = [...$("#inputs-list").querySelectorAll("input:checked")].map((i) => i.value);
    const spec = { kind: "extract", ...values, inputs, reference: values.reference ? [values.reference] : [] };
    const box = $("#extract-watch");
    if (!inputs.length) { box.replaceChildren(el("div", { class: "status error", text: "pick at least one input" })); return; }
    const name = values.faceset;
    await UI.submit(spec, box, (job) => { if (job.state === "done") { selected = name; renderList(); loadDetail(); } });
  }

  UI.page("facesets", {
    show() { if (selected) loadDetail(); },
    refresh() {
      const d = UI.options.extract;
      for (const k of ["size", "frames", "every", "max_faces", "min_face", "workers"]) $(`#extract-form [name=${k}]`).placeholder = d[k];
      renderInputs();
      if (!selected && UI.workspace.facesets.length) selected = UI.workspace.facesets[0].name;
      renderList();
      UI.labels.refresh();
    },
  });

  window.addEventListener("DOMContentLoaded", () => {
    $("#extract-form").addEventListener("submit", extract);
    UI.dropZone($("#inputs-drop"), (files) => UI.upload(files, $("#inputs-upload-status")));
  });
})();
