"""Reading a DFM-contract file back and running it as swap's FaceModel (onnxruntime, CPU by default).

Any file with the contract's names loads: ours (.onnx: our crop, RGB; .dfm: DFL crop, BGR) and, like
DeepFaceLive, a .dfm from DeepFaceLab. Our files say their crop and colour order in their metadata; a file
without it is taken as DFL's (whole-face crop, BGR). Faces arrive from our aligner in our crop; for a
DFL-crop file they are resampled into its crop and the outputs back with the fixed similarity of crop.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from deepfake.errors import BadInputError
from deepfake.export.crop import dfl_to_ours, ours_to_dfl
from deepfake.export.graph import INPUT, OUTPUTS

MORPH_INPUT = "morph_value:0"  # DFL's AMP models: how far to morph towards the celebrity, 0..1


@dataclass
class FaceGraph:
    """A loaded contract file: its session, the crop it expects and its metadata."""

    path: Path
    session: object  # onnxruntime.InferenceSession
    resolution: int
    crop: str  # dfl | ours
    bgr: bool
    meta: dict[str, str] = field(default_factory=dict)
    morph: bool = False

    @property
    def ours(self) -> bool:
        return self.meta.get("tool") == "deepfake"


def load_face_graph(path: str | Path, threads: int = 1, providers: list[str] | None = None) -> FaceGraph:
    """Open a .dfm/.onnx file; BadInputError (one line) when it is missing, not ONNX, or not the contract."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(path, "not found")
    return open_face_graph(path.read_bytes(), path, threads, providers)


def open_face_graph(data: bytes, path: Path, threads: int = 1, providers: list[str] | None = None) -> FaceGraph:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
        first = (str(e).strip().splitlines() or ["unreadable"])[0][:200]
        raise BadInputError(path, f"not a readable ONNX model ({first})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    in_names, out_names = [i.name for i in inputs], [o.name for o in outputs]
    if not inputs or inputs[0].name != INPUT or tuple(out_names) != OUTPUTS or (
            len(inputs) == 2 and inputs[1].name != MORPH_INPUT) or len(inputs) > 2:
        raise BadInputError(path, f"not a DFM model: inputs {in_names}, outputs {out_names} (expected input {INPUT} "
                                  f"and outputs {', '.join(OUTPUTS)})")
    shape = inputs[0].shape
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise BadInputError(path, f"not a DFM model: {INPUT} has shape {shape} (expected [N, R, R, 3])")
    meta = dict(session.get_modelmeta().custom_metadata_map)
    crop = "ours" if meta.get("crop") == "deepfake" else "dfl"
    bgr = meta.get("color_order", "BGR") == "BGR"
    return FaceGraph(path, session, int(shape[1]), crop, bgr, meta, morph=len(inputs) == 2)


class GraphFaceModel:
    """A FaceGraph as swap's FaceModel: our aligned faces (N, S, S, 3) uint8 RGB at `coverage` in, the
    swapped faces (N, S, S, 3) float32 RGB 0..1 and their mask (N, S, S) out. The mask is the pixelwise
    minimum of the two masks the file outputs (the input face's and the swap's), as FaceFusion blends."""

    def __init__(self, graph: FaceGraph, coverage: float, morph: float = 1.0):
        self.graph = graph
        self.coverage = coverage
        self.morph = np.float32([morph])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw contract call: (N, R, R, 3) float32 in the file's crop and colour order -> its three outputs."""
        feeds = {INPUT: np.ascontiguousarray(batch, np.float32)}
        if self.graph.morph:
            feeds[MORPH_INPUT] = self.morph
        own_mask, face, face_mask = self.graph.session.run(None, feeds)
        return own_mask, face, face_mask

    def __call__(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, s = faces.shape[0], faces.shape[1]
        if n == 0:
            return np.zeros((0, s, s, 3), np.float32), np.zeros((0, s, s), np.float32)
        r = self.graph.resolution
        if self.graph.crop == "dfl":
            into = ours_to_dfl(s, r, self.coverage)
            back = dfl_to_ours(r, s, self.coverage)
            crops = [cv2.warpAffine(f, into, (r, r), flags=cv2.INTER_AREA if s > r else cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE) for f in faces]
        else:
            crops = [f if s == r else cv2.resize(f, (r, r), interpolation=cv2.INTER_AREA if s > r else cv2.INTER_LINEAR)
                     for f in faces]
        x = np.stack(crops).astype(np.float32) / 255.0  # (N, R, R, 3) RGB
        if self.graph.bgr:
            x = x[..., ::-1]
        own_mask, face, face_mask = self.run(x)  # (N, R, R, 1), (N, R, R, 3), (N, R, R, 1)
        if self.graph.bgr:
            face = face[..., ::-1]
        mask = np.minimum(own_mask, face_mask)[..., 0]  # (N, R, R)
        rgb_out, mask_out = [], []
        for f, m in zip(face, mask):
            f, m = np.ascontiguousarray(f, np.float32), np.ascontiguousarray(m, np.float32)
            if self.graph.crop == "dfl":
                f = cv2.warpAffine(f, back, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                m = cv2.warpAffine(m, back, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            elif s != r:
                f = cv2.resize(f, (s, s), interpolation=cv2.INTER_CUBIC)
                m = cv2.resize(m, (s, s), interpolation=cv2.INTER_LINEAR)
            rgb_out.append(f)
            mask_out.append(m)
        return np.clip(np.stack(rgb_out), 0, 1), np.clip(np.stack(mask_out), 0, 1)
