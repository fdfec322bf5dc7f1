"""Live swapping: a camera (or a video played as live) in, swapped frames out with as little delay as the
CPU allows.

It is swap's pipeline (swap/model.py's adapter or export/runtime.py's onnxruntime graph, swap/compose.py's
mask, colour, blend and paste) under a latency policy:

- the newest frame always wins: a frame the pipeline could not take in time is dropped (and counted),
  never queued (mailbox.py);
- detection does not run on every frame: landmarks track from the previous frame, and the detector runs
  when tracking is lost or every `detect_every` frames (track.py);
- capture, landmarks, and model + paste run on three threads (run.py), so on two cores they overlap.

config/live.py: the settings. model.py: a model folder, .onnx or .dfm as swap's model. engine.py: one frame
through track, align, model, compose and the visible mark (the CLI and the UI's Live page share it).
sources.py / sinks.py: cameras, files played as live; the file and the virtual camera. stats.py: what is
printed and written with --stats.
"""
