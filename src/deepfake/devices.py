"""The one place a device name and a precision name become torch objects: train, swap, evaluate and
detect all resolve `--device` and `--amp` here, so `auto` means the same thing everywhere."""

from __future__ import annotations

import torch

from deepfake.errors import DeepfakeError


def resolve_device(name: str) -> torch.device:
    """auto | cpu | cuda | cuda:N -> a torch.device; a one-line error for CUDA without CUDA or a bad name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeepfakeError(f"device '{name}' asked for, but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DeepfakeError(f"unknown device '{name}' (auto | cpu | cuda | cuda:N)") from None


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """auto | bf16 | off -> the autocast dtype, or None for float32."""
    if name == "off":
        return None
    if name == "auto":
        # bf16 on GPUs that have it; off on CPU, where bf16 is slow and would break exact resume checks.
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "bf16":
        return torch.bfloat16
    raise DeepfakeError(f"amp '{name}': choose auto, bf16 or off (fp16 needs loss scaling; bf16 does not)")


def configure_cuda(device: torch.device) -> None:
    """The CUDA settings training runs under (process-wide torch flags; nothing on a CPU).

    cudnn autotuning pays because every step has the same shapes. TF32 for float32 matmuls and
    convolutions, as faceswap's fp32 runs use: only an `--amp off` run does float32 work in big layers."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
