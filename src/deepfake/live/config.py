"""`deepfake live`'s settings (saved next to its file output)."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.config import SwapConfig

RUNTIMES = ("onnx", "torch")


@dataclass
class LiveConfig:
    direction: str = "a2b"  # a2b: A's face onto the person in the source (B) | b2a
    checkpoint: str = "last"  # a model folder's weights: last | best | a step number
    runtime: str = "onnx"  # a model folder runs as an ONNX graph exported on the fly (onnx) or in PyTorch (torch)
    threads: int = 1  # intra-op threads of the model's runtime (capture and landmarks run beside it)
    detect_every: int = 10  # frames between detector runs while a face is tracked
    watermark: bool = True  # the visible "SYNTHETIC" mark on every frame (a stream has no metadata)
    invisible_mark: bool = True  # provenance/watermark.py's payload (tool marker + model hash) in the -o file's faces
    virtual_camera: bool = False  # also send the frames to a virtual camera (pyvirtualcam)
    frames: int = 0  # stop after N source frames (0 = at the end of the source, or Ctrl-C)
    seconds: float = 0.0  # stop after S seconds (0 = no limit)
    # How the face is blended in: swap's options of the same names.
    mask: str = "learned*hull"
    color: str = "rct"
    blend: str = "feather"
    erode: int = 0
    blur: int = 0
    sharpen: float = 0.0
    # The -o file: libx264 settings light enough to keep up.
    crf: int = 23
    preset: str = "veryfast"

    def swap_config(self) -> SwapConfig:
        """The swap settings the shared compose code reads."""
        return SwapConfig(direction=self.direction, mask=self.mask, color=self.color, blend=self.blend, erode=self.erode,
                          blur=self.blur, sharpen=self.sharpen, all_faces=True, device="cpu",
                          checkpoint=self.checkpoint, crf=self.crf, preset=self.preset)
