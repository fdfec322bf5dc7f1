"""The Live page's WebSocket, /api/live: the browser's camera frames in, swapped frames out.

The page opens `/api/live?model=NAME&direction=a2b` and sends one JPEG frame (a binary message) at a
time, the next only when the answer to the last has come back, so the newest camera frame always wins and
nothing queues. Each answer is a text message `{"swapped": bool, "ms": server time}` followed by the
frame as a JPEG (binary), with the visible SYNTHETIC mark. The pipeline is `deepfake live`'s (live/engine.py:
tracked landmarks, the model exported to ONNX on the fly, swap's compose), one engine per socket.

The token and Origin rules are guard.py's: `Guard` answers a foreign handshake 403 before this runs.
Errors are one line of JSON, `{"error": "..."}`; a bad model closes the socket (1008), a bad frame does not.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from deepfake.config import LiveConfig
from deepfake.config.choices import DIRECTIONS
from deepfake.errors import DeepfakeError

MAX_FRAME_BYTES = 4 * 2**20
MAX_SIDE = 1920
JPEG_QUALITY = 85


def _engine(path, direction: str):
    from deepfake.live.engine import LiveEngine
    from deepfake.live.model import load_live_model

    if direction not in DIRECTIONS:
        raise DeepfakeError(f"direction {direction!r}: choose from {', '.join(DIRECTIONS)}")
    cfg = LiveConfig(direction=direction)
    return LiveEngine(load_live_model(path, cfg), cfg)


def swap_jpeg(engine, data: bytes) -> tuple[bytes, bool]:
    """One JPEG frame through the engine; DeepfakeError (one line) for what is not a usable image."""
    if len(data) > MAX_FRAME_BYTES:
        raise DeepfakeError(f"frame of {len(data)} bytes: at most {MAX_FRAME_BYTES} (send JPEG)")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error:
        bgr = None
    if bgr is None:
        raise DeepfakeError("frame is not a decodable image (send JPEG)")
    if max(bgr.shape[:2]) > MAX_SIDE:
        raise DeepfakeError(f"frame of {bgr.shape[1]}x{bgr.shape[0]} px: at most {MAX_SIDE} px a side")
    out, swapped = engine.swap(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return jpeg.tobytes(), swapped


def add_routes(app: FastAPI, ws) -> None:
    @app.websocket("/api/live")
    async def live(socket: WebSocket, model: str = "", direction: str = "a2b"):
        await socket.accept()
        try:
            path = ws.child("models", model)
            engine = await run_in_threadpool(_engine, path, direction)
        except DeepfakeError as e:
            await socket.send_json({"error": " ".join(str(e).split())})
            await socket.close(code=1008)
            return
        await socket.send_json({"ready": True, "model": model, "direction": direction})
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    await socket.send_json({"error": "send camera frames as binary JPEG messages"})
                    continue
                start = time.perf_counter()
                try:
                    jpeg, swapped = await run_in_threadpool(swap_jpeg, engine, data)
                except DeepfakeError as e:
                    await socket.send_json({"error": " ".join(str(e).split())})
                    continue
                await socket.send_json({"swapped": swapped, "ms": round((time.perf_counter() - start) * 1000, 1)})
                await socket.send_bytes(jpeg)
        except WebSocketDisconnect:
            return
