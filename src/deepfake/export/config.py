"""The export's settings, saved in the file's metadata beside the model's own config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ExportConfig:
    checkpoint: str = "last"  # which weights of the model folder: last | best | a step number
    direction: str = "a2b"  # a2b: the graph puts A's face onto B (its input shows B) | b2a
    fp16: bool = False  # the autoencoder's weights and arithmetic in float16 (input and outputs stay float32)
    dfm_size: int = 0  # the .dfm's input side, a multiple of the model's resolution; 0 = the smallest >= 224
    opset: int = 17  # ONNX opset; grid_sample needs >= 16
