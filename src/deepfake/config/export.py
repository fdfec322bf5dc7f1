"""The export's settings, saved in the file's metadata beside the model's own config."""

from __future__ import annotations

from dataclasses import dataclass

from deepfake.config.choices import CHECKPOINT_HELP, DIRECTIONS
from deepfake.config.options import CHECKPOINT_PATTERN, option


@dataclass
class ExportConfig:
    checkpoint: str = option("last", CHECKPOINT_HELP, metavar="best|last|STEP", pattern=CHECKPOINT_PATTERN)
    direction: str = option("a2b", "a2b: the file puts A's face onto B (its input shows B); b2a the reverse",
                            choices=DIRECTIONS)
    # The autoencoder's weights and arithmetic in float16 (input and outputs stay float32).
    fp16: bool = option(False, "float16 weights and arithmetic (half the size; for GPUs)")
    dfm_size: int = option(0, ".dfm input side, a multiple of the model's resolution (0 = the smallest >= 224, "
                           "the size of DeepFaceLive's public models)", lo=0, metavar="D")
    opset: int = option(17, "ONNX opset (grid_sample needs 16 or later)", lo=16)
