// Mask labels: draw include and exclude polygons on a faceset's aligned faces, over a mask (the hull,
// the masks `mask apply` wrote, or a mask model's live prediction), save them into labels.json, train
// the segmenter on them and look again. Points are kept in aligned-face pixels, as labels.json has them;
// the canvas only scales them for drawing.
"use strict";
(function () {
  const { el, $, api, q } = UI;
  const CLOSE_PX = 9; // a click this near the first point closes the polygon
  const COLORS = { include: [46, 160, 90], exclude: [200, 50, 50] };
  let name = null;
  let list = { faces: [], total: 0, offset: 0 };
  let face = null;
  let polys = { include: [], exclude: [] };
  let current = [];
  let dirty = false;
  let image = null, overlay = null;

  const kind = () => document.querySelector("input[name=label-kind]:checked").value;
  const scale = () => $("#label-canvas").width / face.size;

  function status(text, cls = "") { const s = $("#label-status"); s.textContent = text; s.className = `status ${cls}`; }

  function draw() {
    const canvas = $("#label-canvas");
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!face) return;
    if (image && image.complete) ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (overlay) ctx.drawImage(overlay, 0, 0, canvas.width, canvas.height);
    const k = scale();
    for (const which of ["include", "exclude"]) {
      const [r, g, b] = COLORS[which];
      for (const p of polys[which]) {
        ctx.beginPath();
        p.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
        ctx.closePath();
        ctx.fillStyle = `rgba(${r},${g},${b},0.25)`;
        ctx.strokeStyle = `rgb(${r},${g},${b})`;
        ctx.lineWidth = 2;
        ctx.fill();
        ctx.stroke();
      }
    }
    if (current.length) {
      const [r, g, b] = COLORS[kind()];
      ctx.strokeStyle = `rgb(${r},${g},${b})`;
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      current.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      for (const [x, y] of current) ctx.fillRect(x * k - 3, y * k - 3, 6, 6);
    }
    canvas.dataset.include = polys.include.length;
    canvas.dataset.exclude = polys.exclude.length;
    canvas.dataset.points = current.length;
  }

  // The mask as a blue tint whose opacity follows its value (a probability, or 0/255 for the hull).
  function tint(img) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, c.width, c.height);
    const alpha = Number($("#label-opacity").value);
    for (let i = 0; i < data.data.length; i += 4) {
      const v = data.data[i] / 255;
      data.data[i] = 40; data.data[i + 1] = 110; data.data[i + 2] = 255;
      data.data[i + 3] = Math.round(255 * alpha * v);
    }
    ctx.putImageData(data, 0, 0);
    return c;
  }

  function overlayUrl() {
    const v = $("#label-overlay").value;
    if (!face || !v) return null;
    if (v === "hull") return face.hull;
    if (v === "applied") return face.applied;
    const m = UI.workspace.mask_models.find((x) => x.name === v);
    return `/api/facesets/${q(name)}/predict?face=${q(face.file)}&model=${q(v)}&v=${m ? `${m.step}-${m.modified}` : ""}`;
  }

  function loadOverlay() {
    overlay = null;
    const canvas = $("#label-canvas");
    canvas.dataset.overlay = "";
    const url = overlayUrl();
    if (!url) { draw(); return; }
    const img = new Image();
    img.onload = () => { overlay = tint(img); canvas.dataset.overlay = $("#label-overlay").value; draw(); };
    img.onerror = () => status(`no ${$("#label-overlay").value} mask for this face`, "error");
    img.src = url;
  }

  function open(f) {
    const lost = dirty && face && face.file !== f.file ? ` (unsaved changes to ${face.file} discarded)` : "";
    face = f;
    polys = { include: f.include.map((p) => p.slice()), exclude: f.exclude.map((p) => p.slice()) };
    current = [];
    dirty = false;
    image = new Image();
    image.onload = draw;
    image.src = f.url;
    Object.assign($("#label-canvas").dataset, { face: f.file, faceset: name });
    status(`${f.file}: ${f.include.length} include, ${f.exclude.length} exclude polygon(s) · click to add points, click the first one to close${lost}`);
    renderFaces();
    loadOverlay();
  }

  function renderFaces() {
    const tiles = list.faces.map((f) => el("figure", {
      class: `face label-face ${face && f.file === face.file ? "active" : ""}`, "data-file": f.file, onclick: () => open(f),
    }, el("img", { src: f.url, alt: f.file, loading: "lazy" }),
      el("figcaption", { text: f.include.length + f.exclude.length ? `✓ ${f.include.length}+/${f.exclude.length}−` : f.file.split("/").pop() })));
    const more = list.offset + list.faces.length < list.total
      ? el("button", { type: "button", class: "small", onclick: () => loadFaces(list.offset + list.faces.length) }, "next faces") : null;
    const back = list.offset > 0 ? el("button", { type: "button", class: "small", onclick: () => loadFaces(Math.max(0, list.offset - 48)) }, "previous") : null;
    $("#label-faces").replaceChildren(el("div", { class: "hint", text: `${list.labelled} of ${list.total} faces labelled (labelled first)` }),
      el("div", { class: "faces" }, tiles), el("div", { class: "buttons" }, back, more));
  }

  // The face being edited stays as it is (points half drawn included); only the list is read again.
  async function loadFaces(offset = 0) {
    try {
      list = await api("GET", `/api/facesets/${q(name)}/faces?offset=${offset}`);
    } catch (e) { status(e.message, "error"); return; }
    const again = face && list.faces.find((f) => f.file === face.file);
    if (again) { face.applied = again.applied; face.hull = again.hull; }
    if (!face && list.faces.length) open(list.faces[0]);
    else renderFaces();
  }

  function point(ev) {
    const canvas = $("#label-canvas");
    const r = canvas.getBoundingClientRect();
    const k = scale() * (r.width / canvas.width);
    const clamp = (v) => Math.min(face.size, Math.max(0, Math.round((v / k) * 100) / 100));
    return [clamp(ev.clientX - r.left), clamp(ev.clientY - r.top)];
  }

  function closePolygon() {
    if (current.length < 3) { if (current.length) status("a polygon needs at least 3 points", "error"); return false; }
    polys[kind()].push(current);
    current = [];
    dirty = true;
    status(`unsaved: ${polys.include.length} include, ${polys.exclude.length} exclude polygon(s)`);
    draw();
    return true;
  }

  function click(ev) {
    if (!face) return;
    const p = point(ev);
    const k = scale();
    if (current.length >= 3 && Math.hypot((p[0] - current[0][0]) * k, (p[1] - current[0][1]) * k) <= CLOSE_PX) {
      closePolygon();
      return;
    }
    current.push(p);
    draw();
  }

  async function save() {
    if (!face) return;
    if (current.length) closePolygon();
    try {
      const r = await api("PUT", `/api/facesets/${q(name)}/labels`, { face: face.file, include: polys.include, exclude: polys.exclude });
      // The list may have been read again since this face was opened: update both copies.
      for (const f of [face, list.faces.find((x) => x.file === face.file)]) if (f) Object.assign(f, { include: r.include, exclude: r.exclude });
      dirty = false;
      list.labelled = r.labelled;
      status(`saved ${r.path}: ${r.include.length} include, ${r.exclude.length} exclude; ${r.labelled} face(s) labelled`, "tagged");
      renderFaces();
    } catch (e) { status(e.message, "error"); }
  }

  function edit(action) {
    if (action === "undo") current.pop();
    if (action === "drop") { const p = polys[kind()]; if (p.length) { p.pop(); dirty = true; } }
    if (action === "clear") { polys = { include: [], exclude: [] }; current = []; dirty = true; }
    if (dirty) status("unsaved changes: Save writes them");
    draw();
  }

  function renderModels() {
    const sel = $("#label-overlay");
    const models = UI.workspace.mask_models || [];
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "(none)"), el("option", { value: "hull" }, "hull (extract's mask)"),
      el("option", { value: "applied" }, "masks written by mask apply"),
      ...models.map((m) => el("option", { value: m.name }, `prediction of ${m.name} (step ${m.step})`)));
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    UI.fillSelect($("#mask-models"), models.map((m) => m.name));
  }

  async function train(ev) {
    ev.preventDefault();
    const v = UI.formValues($("#mask-form"));
    const exists = (UI.workspace.mask_models || []).some((m) => m.name === v.model);
    const n = v.steps;
    delete v.steps;
    // Hull-only pretraining comes first: a new model given fewer steps than that would never see the labels.
    const pre = UI.options.mask.pretrain_steps;
    if (!exists && n && v.pretrain_steps === undefined && n <= pre) v.pretrain_steps = Math.floor(n / 2);
    const spec = { kind: "mask_train", facesets: [name], ...v, ...(n ? (exists ? { more_steps: n } : { steps: n }) : {}) };
    await UI.submit(spec, $("#mask-watch"), (job) => {
      if (job.state !== "done") return;
      renderModels();
      $("#label-overlay").value = v.model;
      loadOverlay();
    });
  }

  async function applyMasks() {
    const model = $("#mask-form [name=model]").value.trim();
    await UI.submit({ kind: "mask_apply", faceset: name, model, device: $("#mask-form [name=device]").value.trim() || undefined },
      $("#mask-watch"), async (job) => {
        if (job.state !== "done") return;
        await loadFaces(list.offset);
        $("#label-overlay").value = "applied";
        loadOverlay();
      });
  }

  UI.labels = {
    open(faceset) {
      $("#labels-card").hidden = false;
      $("#labels-name").textContent = faceset;
      for (const k of ["pretrain_steps", "resolution", "batch"]) $(`#mask-form [name=${k}]`).placeholder = UI.options.mask[k];
      if (faceset !== name) {
        name = faceset;
        face = null;
        list = { faces: [], total: 0, offset: 0 };
        delete $("#label-canvas").dataset.face;
        draw();
      }
      renderModels();
      loadFaces(list.offset);
    },
    refresh() { if (name) renderModels(); },
  };


  window.addEventListener("DOMContentLoaded", () => {
    $("#label-canvas").addEventListener("click", click);
    $("#label-close").addEventListener("click", closePolygon);
    $("#label-save").addEventListener("click", save);
    for (const a of ["undo", "drop", "clear"]) $(`#label-${a}`).addEventListener("click", () => edit(a));
    $("#label-overlay").addEventListener("change", loadOverlay);
    $("#label-opacity").addEventListener("change", loadOverlay);
    $("#mask-form").addEventListener("submit", train);
    $("#mask-apply").addEventListener("click", applyMasks);
    for (const r of document.querySelectorAll("input[name=label-kind]")) r.addEventListener("change", draw);
    document.addEventListener("keydown", (e) => {
      if (UI.current !== "facesets" || !face || e.target.closest("input, textarea, select")) return;
      if (e.key === "Enter") closePolygon();
      if (e.key === "Backspace") { e.preventDefault(); edit("undo"); }
    });
  });
})();
