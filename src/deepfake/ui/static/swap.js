// Swap: model, input and the swap options; then a before/after viewer with a frame slider (frames
// decoded by the server with PyAV), the output to play or download, and its provenance tag.
"use strict";
(function () {
  const { el, $, api, q } = UI;
  let current = null; // {output, input, frames}

  function renderInputs() {
    const media = UI.workspace.inputs.filter((f) => ["image", "video", "folder"].includes(f.kind));
    UI.fillSelect($("#swap-input"), media, { value: (f) => f.path, label: (f) => `${f.name} (${f.kind})` });
    const outs = UI.workspace.outputs.filter((f) => ["image", "video"].includes(f.kind));
    UI.fillSelect($("#swap-output"), outs, { value: (f) => f.path, label: (f) => f.name, empty: "(pick an output)" });
  }

  // The input an output was made from: the swap job that wrote it, else the source its tag names.
  function sourceOf(output, tag) {
    const job = UI.jobs.find((j) => j.kind === "swap" && j.targets.output === output && j.state === "done");
    if (job) return job.spec.preview ? null : job.targets.input; // a preview sheet is its own before/after
    const name = tag && tag.source;
    const found = name && UI.workspace.inputs.find((f) => f.name === name);
    return found ? found.path : null;
  }

  async function showOutput(path) {
    const tagBox = $("#swap-tag");
    $("#swap-play").replaceChildren();
    if (!path) { current = null; tagBox.textContent = ""; return; }
    let info;
    try { info = await api("GET", `/api/media?path=${q(path)}`); } catch (e) {
      tagBox.textContent = e.message; tagBox.className = "status error"; return;
    }
    const tag = info.provenance;
    tagBox.className = `status ${tag ? "tagged" : "error"}`;
    tagBox.textContent = tag
      ? `tagged synthetic: ${tag.tool} ${tag.version}, model ${tag.model} (step ${tag.model_step}), ${tag.direction}, made ${tag.created}`
      : "no provenance tag found in this file";
    const input = sourceOf(path, tag);
    const isSheet = info.kind === "image" && !input;
    current = { output: path, input, frames: info.frames || 1, kind: info.kind };
    const slider = $("#swap-frame");
    slider.max = Math.max(0, current.frames - 1);
    slider.value = 0;
    slider.disabled = info.kind !== "video";
    drawFrame();
    const download = el("a", { href: `/api/file?path=${q(path)}&download=1`, download: "", class: "button" }, "Download");
    const player = info.kind === "video"
      ? el("video", { src: info.url, controls: true, preload: "metadata", id: "swap-video" })
      : (isSheet ? el("img", { src: info.url, alt: "before/after sheet", class: "sheet" }) : null);
    $("#swap-play").replaceChildren(...[player, download].filter(Boolean));
  }

  function drawFrame() {
    if (!current) return;
    const i = Number($("#swap-frame").value);
    $("#swap-frame-v").textContent = current.kind === "video" ? `${i + 1} of ${current.frames}` : "";
    const before = $("#swap-before"), after = $("#swap-after");
    if (current.input) before.src = `/api/frame?path=${q(current.input)}&index=${i}`;
    else before.removeAttribute("src");
    after.src = `/api/frame?path=${q(current.output)}&index=${i}`;
  }

  async function run(ev) {
    ev.preventDefault();
    const v = UI.formValues($("#swap-form"));
    const spec = { kind: "swap", ...v, all_faces: v.faces === "all" };
    delete spec.faces;
    await UI.submit(spec, $("#swap-watch"), (job) => {
      if (job.state !== "done") return;
      $("#swap-output").value = job.targets.output;
      showOutput(job.targets.output);
    });
  }

  UI.page("swap", {
    show() { if (current) drawFrame(); },
    refresh: renderInputs,
  });

  window.addEventListener("DOMContentLoaded", () => {
    $("#swap-form").addEventListener("submit", run);
    $("#swap-output").addEventListener("change", (e) => showOutput(e.target.value));
    $("#swap-frame").addEventListener("input", drawFrame);
    $("#swap-upload").addEventListener("change", async (e) => {
      const done = await UI.upload([...e.target.files], $("#swap-upload-status"));
      if (done.length) $("#swap-input").value = done[0].path;
      e.target.value = "";
    });
  });
})();
