"""`deepfake live`'s settings, saved next to its file output (OUT.live.json)."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.config.choices import BLEND_MODES, CHECKPOINT_HELP, COLOR_MODES, DIRECTIONS, LIVE_RUNTIMES, MASK_MODES
from deepfake.config.options import CHECKPOINT_PATTERN, option
from deepfake.config.swap import SwapConfig


@dataclass
class LiveConfig:
    # Empty: not given, so an exported file's own direction stands (a model folder's is a2b).
    direction: str = option("", "a2b puts A's face onto the person in the source; b2a the reverse; default: a2b "
                            "for a model folder, the direction an exported file was made with", choices=DIRECTIONS)
    checkpoint: str = option("last", CHECKPOINT_HELP, metavar="best|last|STEP", pattern=CHECKPOINT_PATTERN)
    runtime: str = option("onnx", "a model folder runs as an ONNX graph exported on the fly (onnxruntime) or in "
                          "PyTorch (torch)", choices=LIVE_RUNTIMES)
    threads: int = option(1, "the model runtime's threads (capture and landmarks run beside it)", lo=1, hi=64)
    detect_every: int = option(10, "frames between face detections while a face is tracked (1 = every frame)",
                               lo=1, hi=1000)
    watermark: bool = option(True, "no visible 'SYNTHETIC' mark on the frames (prints a responsible-use note)",
                             flag="no-watermark")
    invisible_mark: bool = option(True, "leave out the invisible mark (tool marker + model hash) in the -o file's "
                                  "faces", flag="no-invisible-mark")
    sign_cert: str = option("", "certificate chain (signing certificate first) for the -o file's Content "
                            "Credentials; default: a local chain made on first use in the config folder",
                            metavar="PEM", ui=False)
    sign_key: str = option("", "the private key of --sign-cert", metavar="PEM", ui=False)
    virtual_camera: bool = option(False, "also send the frames to a virtual camera (v4l2loopback)")
    frames: int = option(0, "stop after N source frames (0 = at the end of the source, or Ctrl-C)", lo=0)
    seconds: float = option(0.0, "stop after S seconds (0 = no limit)", lo=0)
    # How the face is blended in: swap's options of the same names.
    mask: str = option("learned*hull", "the blend mask, as swap's --mask (no segmenter live)",
                       choices=tuple(m for m in MASK_MODES if "segmenter" not in m))
    color: str = option("rct", "colour matching", choices=COLOR_MODES)
    blend: str = option("feather", "how the face meets the frame", choices=BLEND_MODES)
    erode: int = option(0, "shrink the mask by N px of the aligned face (negative grows)", lo=-256, hi=256)
    blur: int = option(0, "feather the mask edge over N px (0 = automatic; -1 = none)", lo=-1, hi=512)
    sharpen: float = option(0.0, "unsharp-mask amount (0 = off)", lo=0, hi=10)
    # The -o file: libx264 settings light enough to keep up.
    crf: int = option(23, "-o file: libx264 quality (lower = better)", lo=0, hi=51)
    preset: str = option("veryfast", "-o file: libx264 preset (ultrafast .. veryslow)")

    def swap_config(self) -> SwapConfig:
        """The swap settings the shared compose code reads."""
        return SwapConfig(direction=self.direction or "a2b", mask=self.mask, color=self.color, blend=self.blend,
                          erode=self.erode, blur=self.blur, sharpen=self.sharpen, all_faces=True, device="cpu",
                          checkpoint=self.checkpoint, crf=self.crf, preset=self.preset)
