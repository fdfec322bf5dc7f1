"""The module an export traces: one face batch in, the DFM contract's three outputs.

    in_face:0            (N, D, D, 3) float32, 0..1; BGR in the DFL whole-face crop (.dfm), RGB in ours (.onnx)
    out_face_mask:0      (N, D, D, 1) the input face's mask (its own decoder's learned mask)
    out_celeb_face:0     (N, D, D, 3) the swapped face, in the input's crop and colour order
    out_celeb_face_mask: (N, D, D, 1) the swapped face's mask

D is the model's resolution R for .onnx. For .dfm it is a multiple k of R of at least 224 px, the size of
DeepFaceLive's public models: peers blur the mask by a fixed number of pixels (FaceFusion: sigma 6.25),
which at 64 px would fade the whole face out. The .dfm graph averages k x k blocks down to R, resamples the
DFL crop to ours with a constant grid_sample grid (crop.py), runs the model, and samples its outputs back
into the DFL crop at D. A DFL-crop pixel that our crop does not cover gets a zero mask, so a peer blends
nothing there.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.export.crop import dfl_to_ours, ours_to_dfl, sampling_grid

INPUT = "in_face:0"
OUTPUTS = ("out_face_mask:0", "out_celeb_face:0", "out_celeb_face_mask:0")
FLAVOURS = {".dfm": "dfl", ".onnx": "ours"}  # file suffix -> crop the file expects


class ContractGraph(nn.Module):
    """A trained autoencoder behind the DFM contract.

    Args:
        autoencoder: DF or LIAE (models/autoencoder.py), in eval mode.
        in_side, out_side: the identity the input shows and the decoder that swaps it.
        resolution: the model's R (the graph's crop side).
        crop: "dfl" (BGR, DFL whole-face crop, resampled to ours and back) or "ours" (RGB, our crop).
        coverage: our crop's coverage (the model's config), which fixes the resampling.
        half: run the autoencoder in fp16 (inputs and outputs stay float32, as the contract says).
        size: the .dfm's input side D, a multiple of `resolution` (0 = dfm_size's choice).
    """

    def __init__(self, autoencoder: nn.Module, in_side: str, out_side: str, resolution: int, crop: str,
                 coverage: float, half: bool = False, size: int = 0):
        super().__init__()
        if crop not in ("dfl", "ours"):
            raise ValueError(f"crop '{crop}': choose dfl or ours")
        self.autoencoder = autoencoder.half() if half else autoencoder
        self.in_side, self.out_side, self.crop, self.half = in_side, out_side, crop, half
        r = resolution
        self.size = (size or dfm_size(r)) if crop == "dfl" else r
        if self.size % r:
            raise ValueError(f"the .dfm size {self.size} must be a multiple of the model's resolution {r}")
        self.pool = self.size // r
        if crop == "dfl":
            # Our crop is filled from the DFL one (each of our pixels looks up its DFL pixel) and back. The
            # lookup is in D-pixel units although it samples the pooled image: with align_corners=False a
            # normalised coordinate names the same point of the crop at any side, so a pooled pixel counts
            # at the centre of the k x k block it averages (k*i + (k-1)/2), not at its corner (k*i).
            d = self.size
            to_ours = torch.from_numpy(sampling_grid(ours_to_dfl(r, d, coverage), r, d))  # (1, R, R, 2)
            to_dfl = torch.from_numpy(sampling_grid(dfl_to_ours(d, r, coverage), d, r))  # (1, D, D, 2)
            self.register_buffer("grid_to_ours", to_ours)
            self.register_buffer("grid_to_dfl", to_dfl)

    def _resample(self, x: torch.Tensor, grid: torch.Tensor, padding: str) -> torch.Tensor:
        grid = grid.expand(x.shape[0], -1, -1, -1)  # (N, R, R, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)

    def forward(self, in_face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = in_face.permute(0, 3, 1, 2)  # (N, 3, D, D)
        if self.crop == "dfl":
            x = x[:, [2, 1, 0]]  # BGR -> RGB
            if self.pool > 1:
                x = F.avg_pool2d(x, self.pool)  # (N, 3, R, R), still the DFL crop
            x = self._resample(x, self.grid_to_ours, "border")  # (N, 3, R, R) in our crop
        dtype = torch.float16 if self.half else torch.float32
        z = self.autoencoder.encode(x.to(dtype))
        face, face_mask = self.autoencoder.decode(z, self.out_side)  # (N, 3, R, R), (N, 1, R, R)
        _, own_mask = self.autoencoder.decode(z, self.in_side)  # (N, 1, R, R)
        face, face_mask, own_mask = face.float(), face_mask.float(), own_mask.float()
        if self.crop == "dfl":
            face = self._resample(face, self.grid_to_dfl, "border")[:, [2, 1, 0]]  # RGB -> BGR
            face_mask = self._resample(face_mask, self.grid_to_dfl, "zeros")
            own_mask = self._resample(own_mask, self.grid_to_dfl, "zeros")
        nhwc = (t.permute(0, 2, 3, 1) for t in (own_mask, face, face_mask))
        return tuple(nhwc)  # (N, D, D, 1), (N, D, D, 3), (N, D, D, 1)


def dfm_size(resolution: int, at_least: int = 224) -> int:
    """The .dfm's input side: the smallest multiple of the model's resolution that is at least `at_least`."""
    return resolution * max(1, -(-at_least // resolution))
