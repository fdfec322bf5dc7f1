// Live: the browser's camera (getUserMedia) -> /api/live over a WebSocket -> swapped frames drawn on a
// canvas. One frame is in flight at a time: the next is grabbed from the camera only when the last came
// back, so the newest frame always wins. FPS and latency (send to drawn) are shown under the buttons.
"use strict";
(function () {
  const { $ } = UI;
  let socket = null, stream = null, sentAt = 0, meta = null;
  let drawn = [], latencies = [], frames = 0, swapped = 0;
  const grab = document.createElement("canvas");

  function status(text, error = false) {
    $("#live-status").textContent = text;
    $("#live-status").classList.toggle("error", error);
  }

  function showStats() {
    const now = performance.now();
    drawn = drawn.filter((t) => now - t < 2000);
    const fps = drawn.length > 1 ? (drawn.length - 1) / ((drawn[drawn.length - 1] - drawn[0]) / 1000) : 0;
    const sorted = [...latencies].sort((a, b) => a - b);
    const p50 = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
    const box = $("#live-stats");
    box.textContent = `${fps.toFixed(1)} fps · latency ${p50.toFixed(0)} ms (median of the last ${sorted.length})` +
      ` · ${frames} frames, ${swapped} swapped` + (meta ? ` · server ${meta.ms} ms` : "");
    Object.assign(box.dataset, { fps: fps.toFixed(2), latency: p50.toFixed(1), frames, swapped });
  }

  function sendFrame() {
    const video = $("#live-video");
    if (!socket || socket.readyState !== WebSocket.OPEN || !video.videoWidth) return;
    grab.width = video.videoWidth;
    grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    grab.toBlob((blob) => {
      if (!socket || socket.readyState !== WebSocket.OPEN) return;
      sentAt = performance.now();
      socket.send(blob);
    }, "image/jpeg", 0.85);
  }

  async function onMessage(ev) {
    if (typeof ev.data === "string") {
      const m = JSON.parse(ev.data);
      if (m.error) { status(m.error, true); sendFrame(); return; }  // a closing socket sends nothing
      if (m.ready) { status(`swapping live with ${m.model} (${m.direction})`); sendFrame(); return; }
      meta = m;
      return;
    }
    const bitmap = await createImageBitmap(ev.data);
    const canvas = $("#live-canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    latencies.push(performance.now() - sentAt);
    if (latencies.length > 30) latencies.shift();
    drawn.push(performance.now());
    frames += 1;
    if (meta && meta.swapped) swapped += 1;
    showStats();
    sendFrame();
  }

  async function start() {
    const model = $("#live-model").value;
    if (!model) { status("pick a model (train one on the Train page)", true); return; }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (e) { status(`no camera: ${e.message}`, true); return; }
    const video = $("#live-video");
    video.srcObject = stream;
    await video.play();
    frames = swapped = 0; drawn = []; latencies = [];
    status("loading the model…");
    const params = new URLSearchParams({ model, direction: $("#live-direction").value });
    socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live?${params}`);
    socket.binaryType = "blob";
    socket.onmessage = onMessage;
    socket.onclose = (ev) => { if (ev.code !== 1000 && !$("#live-status").classList.contains("error")) status(`connection closed (${ev.code})`, true); stop(); };
    $("#live-start").disabled = true;
    $("#live-stop").disabled = false;
  }

  function stop() {
    if (socket) { const s = socket; socket = null; if (s.readyState <= WebSocket.OPEN) s.close(1000); }
    if (stream) { for (const t of stream.getTracks()) t.stop(); stream = null; }
    $("#live-start").disabled = false;
    $("#live-stop").disabled = true;
  }

  UI.page("live", {
    refresh() {
      UI.fillSelect($("#live-model"), UI.pairModels.map((m) => m.name), { empty: "(pick a model)" });
    },
  });

  window.addEventListener("DOMContentLoaded", () => {
    $("#live-start").addEventListener("click", start);
    $("#live-stop").addEventListener("click", stop);
  });
})();
