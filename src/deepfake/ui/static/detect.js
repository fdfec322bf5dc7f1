// Detect: drop a file (or pick one) and see `deepfake detect --json`'s answer: its Content Credentials
// (C2PA), the invisible mark, our provenance tag, and with a discriminator the per-face real/fake scores.
"use strict";
(function () {
  const { el, $, api, q } = UI;

  function credentialsText(c) {
    if (!c) return "content credentials: not read";
    if (c.error) return `content credentials: ${c.error}${c.tampered ? " (reported as tampered)" : ""}`;
    if (!c.present) return "content credentials: none";
    const bad = (c.status || []).filter((s) => s !== "signingCredential.untrusted");
    const state = c.tampered ? `TAMPERED (${bad.join(", ")})` : "signature valid";
    const trust = c.trust || (c.trusted ? "trusted signer" : "trust not checked");
    const source = (c.digital_source_type || "").split("/").pop();
    return `content credentials: ${state}; signed by ${c.signer} (${c.issuer}, ${trust}); actions ${(c.actions || []).join(", ")}; digital source type ${source}`;
  }

  function markText(m) {
    if (!m) return "invisible mark: not read";
    if (m.found) return `invisible mark: found, payload ${m.payload} (deepfake, model hash ${m.model_hash}), confidence ${m.confidence.toFixed(2)}, ${m.faces_checked} face(s) in ${m.frames_checked} frame(s)`;
    if (m.note) return `invisible mark: ${m.note}`;
    return `invisible mark: not found (${m.faces_checked} face(s) in ${m.frames_checked} frame(s) checked)`;
  }

  // What the file is, as the CLI's headline: a mark that labels it outranks the discriminator's score.
  function overallText(f) {
    const by = f.labelled_by || [];
    if (by.length) return `synthetic (labelled by its ${by.length > 1 ? by.slice(0, -1).join(", ") + " and " + by[by.length - 1] : by[0]})`;
    if (f.overall === "real" || f.overall === "synthetic") return `${f.overall} (by the discriminator; no synthetic label found)`;
    return "no synthetic label found";
  }

  function scoreText(f, threshold) {
    if (f.verdict === "not scored") {
      return f.decode_error ? `discriminator: not scored: the pixels do not decode (${f.decode_error})`
        : "faces not scored: pick a model with a discriminator to score them";
    }
    const cut = f.decode_error ? `; ${f.decode_error}` : "";
    return `discriminator: ${f.verdict}; mean P(real) ${f.mean_p_real === null ? "–" : f.mean_p_real.toFixed(3)} over ${f.faces.length} face(s) in ${f.frames_scored} frame(s) (threshold ${threshold}${cut})`;
  }

  function render(result) {
    const blocks = result.files.map((f) => {
      if (f.error) return el("div", { class: "status error", text: `${f.path}: ${f.error}` });
      const tag = f.provenance;
      const name = f.path.split("/").pop();
      const faces = f.faces.length ? el("table", { class: "report-table" },
        el("thead", {}, el("tr", {}, ["frame", "time (s)", "face", "P(real)", "label"].map((h) => el("th", { text: h })))),
        el("tbody", {}, f.faces.slice(0, 200).map((s) => el("tr", { class: s.label },
          el("td", { text: s.frame === null ? "–" : s.frame }), el("td", { text: s.time === null ? "–" : s.time.toFixed(2) }),
          el("td", { text: s.face_index }), el("td", { text: s.p_real.toFixed(3) }), el("td", { text: s.label })))))
        : null;
      return el("div", { class: "detect-file", "data-file": name },
        el("h3", { text: name }),
        el("div", { class: `status ${f.overall === "synthetic" ? "tagged" : ""}`, "data-overall": f.overall, text: overallText(f) }),
        el("div", { class: `status ${f.credentials && f.credentials.tampered ? "error" : ""}`, "data-credentials":
          f.credentials && f.credentials.present ? (f.credentials.tampered ? "tampered" : "valid") : "none",
          text: credentialsText(f.credentials) }),
        el("div", { class: `status ${f.mark && f.mark.found ? "tagged" : ""}`, "data-mark": f.mark && f.mark.found ? "yes" : "no",
          text: markText(f.mark) }),
        el("div", { class: `status ${tag ? "tagged" : ""}`, "data-tag": tag ? "yes" : "no",
          text: tag ? `provenance tag: yes, labelled synthetic by ${tag.tool} ${tag.version} (model ${tag.model}, step ${tag.model_step})`
            : "provenance tag: none (not made by this tool, or the tag was stripped)" }),
        el("div", { class: "status", "data-verdict": f.verdict, text: scoreText(f, result.threshold) }),
        faces);
    });
    $("#detect-result").replaceChildren(...blocks);
  }

  async function detect(paths) {
    const model = $("#detect-model").value || null;
    $("#detect-result").replaceChildren();
    await UI.submit({ kind: "detect", inputs: paths, model }, $("#detect-watch"), async (job) => {
      if (job.state !== "done") return;
      try { render(await api("GET", `/api/jobs/${q(job.id)}/result`)); } catch (e) {
        $("#detect-result").replaceChildren(el("div", { class: "status error", text: e.message }));
      }
    });
  }

  UI.page("detect", {
    refresh() {
      const withD = UI.workspace.models.filter((m) => m.discriminator);
      UI.fillSelect($("#detect-model"), withD.map((m) => m.name), { empty: "(none: provenance tag only)" });
      const files = [...UI.workspace.outputs, ...UI.workspace.inputs].filter((f) => ["image", "video"].includes(f.kind));
      UI.fillSelect($("#detect-existing"), files, { value: (f) => f.path, label: (f) => f.path, empty: "(pick a file)" });
    },
  });

  window.addEventListener("DOMContentLoaded", () => {
    UI.dropZone($("#detect-drop"), async (files) => {
      const done = await UI.upload(files, $("#detect-status"));
      if (done.length) detect(done.map((d) => d.path));
    });
    $("#detect-run").addEventListener("click", () => {
      const path = $("#detect-existing").value;
      if (path) detect([path]);
      else $("#detect-status").textContent = "pick a file, or drop one below";
    });
  });
})();
