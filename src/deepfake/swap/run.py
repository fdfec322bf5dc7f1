"""`deepfake swap` as a library call: an image, a folder of images or a video in; labelled output out.

Every check that can fail fast runs before the slow work (checks.py: options, input kind, output
container, output folder writable; here: model folder complete and compatible, the mask model for the
segmenter modes). Outputs are written to temp files and renamed at the end, so a failure anywhere leaves
nothing partial behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from deepfake.config import SwapConfig

from deepfake.config_io import save_json
from deepfake.errors import BadInputError
from deepfake.io.background import BackgroundWriter
from deepfake.provenance.credentials import Credential, signed_output, why_unsigned
from deepfake.provenance.label import IMAGE_FORMATS, add_watermark, make_record, save_labelled_image, video_tags
from deepfake.io.video_writer import VideoWriter
from deepfake.swap.checks import (
    IMAGE_INPUTS,
    check_mask_fits,
    check_output,
    check_writable,
    input_kind,
    new_folders_removed_on_failure,
    validate_config,
)
from deepfake.swap.blend_mask import mask_parts
from deepfake.swap.model import SwapModel, load_segmenter, load_swap_model
from deepfake.swap.pipeline import FrameResult, Swapper, analyzer_config
from deepfake.swap.preview import sheet, side_by_side

log = logging.getLogger(__name__)


@dataclass
class SwapSummary:
    output: Path
    kind: str  # image | folder | video | preview
    frames: int = 0
    frames_with_face: int = 0
    frames_swapped: int = 0
    faces_swapped: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)  # "path: reason" of folder items left out

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        text = (
            f"{self.output}: {self.frames} frame(s), {self.frames_swapped} swapped "
            f"({self.faces_swapped} face(s)) in {self.seconds:.1f} s ({self.fps:.1f} frames/s)"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: " + "; ".join(self.skipped)
        return text


def prepare_masks(model: SwapModel, cfg: SwapConfig) -> tuple[SwapModel, SwapConfig]:
    """The hull region (the model's unless --mask-region says otherwise, which is warned about in one
    line naming both) and, for the segmenter modes, the segmenter. The config comes back with the region
    filled in, as the .swap.json beside the output records it."""
    if cfg.mask_region and cfg.mask_region != model.mask_region:
        log.warning("--mask-region %s, but model %s was trained on '%s' masks (its config.json mask_region): the hull "
                    "is '%s', the learned mask stays '%s'", cfg.mask_region, model.name, model.mask_region,
                    cfg.mask_region, model.mask_region)
    uses_segmenter = "segmenter" in mask_parts(cfg.mask)
    if uses_segmenter and model.segmenter is None:
        model = dataclasses.replace(model, segmenter=load_segmenter(cfg.mask_model, cfg.device))
    elif cfg.mask_model and not uses_segmenter:
        log.warning("--mask-model %s is not used: --mask %s has no segmenter in it", cfg.mask_model, cfg.mask)
    return model, dataclasses.replace(cfg, mask_region=cfg.mask_region or model.mask_region)


def _analyzer(model: SwapModel, cfg: SwapConfig):
    from deepfake.faces.analyzer import FaceAnalyzer

    # Embeddings cost a ResNet pass per face; only compute them when they decide which faces to swap.
    need_identity = model.identity is not None and not cfg.all_faces
    region = cfg.mask_region or model.mask_region
    return FaceAnalyzer(analyzer_config(model.face_size, model.coverage, device=cfg.device, mask_region=region),
                        with_embedding=need_identity)


def _swapper(model: SwapModel, cfg: SwapConfig, analyzer: Any = None, smoother: Any = None) -> Swapper:
    return Swapper(model.model, analyzer or _analyzer(model, cfg), cfg, model.identity, smoother, model.segmenter,
                   mark=_payload(model, cfg))


def _payload(model: SwapModel, cfg: SwapConfig) -> int | None:
    from deepfake.provenance.watermark import payload_for

    return payload_for((model.fingerprint or {}).get("sha256")) if cfg.invisible_mark else None


def _record(model: SwapModel, cfg: SwapConfig, source: Path) -> dict[str, Any]:
    from deepfake.provenance.watermark import payload_hex

    payload = _payload(model, cfg)
    return make_record(model.name, model_step=model.step, direction=cfg.direction, source=source.name,
                       invisible_mark=payload_hex(payload) if payload is not None else False)


def _credential(model: SwapModel, cfg: SwapConfig, source: Path, output: Path) -> Credential | None:
    """The Content Credentials of one output; None (and one line saying why) for a format without them."""
    from deepfake.provenance.watermark import payload_hex

    reason = why_unsigned(output)
    if reason:
        log.warning("%s", reason)
        return None
    payload = _payload(model, cfg)
    return Credential(source=source, source_type="composite", model=model.fingerprint,
                      invisible_mark=payload_hex(payload) if payload is not None else None,
                      sign_cert=Path(cfg.sign_cert) if cfg.sign_cert else None,
                      sign_key=Path(cfg.sign_key) if cfg.sign_key else None)


# ----------------------------------------------------------------------------------------------------
# Entry point.


def swap(input_path: str | Path, output: str | Path, model_dir: str | Path, cfg: SwapConfig,
         progress: bool = True, model: SwapModel | None = None) -> SwapSummary:
    """Swap faces in an image, a folder of images or a video; see the module docstring.

    `model` may be given to reuse a loaded model (or to test with a stand-in).
    """
    validate_config(cfg)
    input_path, output = Path(input_path), Path(output)
    kind = input_kind(input_path)
    check_output(kind, output, cfg, input_path)
    folder = output if kind == "folder" else output.parent
    with new_folders_removed_on_failure(folder):
        check_writable(folder)
        if model is None:
            model = load_swap_model(model_dir, cfg)
        model, cfg = prepare_masks(model, cfg)
        check_mask_fits(cfg, model.face_size, model.coverage, cfg.mask_region)
        if kind == "video":
            return preview_video(input_path, output, model, cfg) if cfg.preview else swap_video(
                input_path, output, model, cfg, progress
            )
        if kind == "image":
            return swap_image_file(input_path, output, model, cfg)
        return swap_folder(input_path, output, model, cfg, progress)


# ----------------------------------------------------------------------------------------------------
# Images.


def swap_image_file(path: Path, output: Path, model: SwapModel, cfg: SwapConfig,
                    swapper: Swapper | None = None) -> SwapSummary:
    from deepfake.io.images import read_image

    start = time.perf_counter()
    rgb = read_image(path)
    swapper_given = swapper
    swapper = swapper or _swapper(model, cfg)
    result = swapper.swap_image(rgb, keep_original=cfg.preview)
    if result.swapped == 0:
        why = "no face found" if result.found == 0 else f"{result.found} face(s), none matches the model's identity"
        raise BadInputError(path, f"{why} (use --all-faces to swap any face)" if result.found else why)
    out = add_watermark(result.frame) if cfg.watermark else result.frame
    if cfg.preview:
        out = side_by_side(result.original, out)
    with signed_output(output, _credential(model, cfg, path, output)) as target:
        save_labelled_image(target, out, _record(model, cfg, path))
    if swapper_given is None:  # a folder writes one config for all its images
        save_json(cfg, output.with_name(output.name + ".swap.json"))
    return SwapSummary(output, "image", 1, 1, 1, result.swapped, time.perf_counter() - start)


def swap_folder(folder: Path, output: Path, model: SwapModel, cfg: SwapConfig, progress: bool = True) -> SwapSummary:
    """Every image in `folder` -> the same name and format in `output`. Bad items are skipped and reported."""
    from tqdm import tqdm

    start = time.perf_counter()
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_INPUTS)
    if not images:
        raise BadInputError(folder, f"no images ({', '.join(sorted(IMAGE_INPUTS))}) in this folder")
    swapper = _swapper(model, cfg)
    summary = SwapSummary(output, "folder")
    for path in tqdm(images, desc="swap", unit="image", disable=not progress):
        try:
            if path.suffix.lower() not in IMAGE_FORMATS:
                raise BadInputError(path, f"cannot label {path.suffix} images; convert to png or jpg")
            done = swap_image_file(path, output / path.name, model, cfg, swapper)
        except BadInputError as e:
            summary.skipped.append(str(e))
            continue
        summary.frames += 1
        summary.frames_with_face += 1
        summary.frames_swapped += 1
        summary.faces_swapped += done.faces_swapped
    summary.seconds = time.perf_counter() - start
    if summary.frames == 0:
        raise BadInputError(folder, "no image could be swapped: " + "; ".join(summary.skipped))
    save_json(cfg, output / "swap_config.json")
    return summary


# ----------------------------------------------------------------------------------------------------
# Video.


def _exact_fps(path: Path, fallback: float) -> Fraction:
    """The stream's frame rate as a fraction (30000/1001 stays exact), else the reader's float."""
    import av

    with contextlib.suppress(Exception), av.open(str(path)) as c:
        rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
        if rate:
            return Fraction(rate)
    return Fraction(fallback).limit_denominator(1001 * 1000)


def _frames(reader: Any, path: Path, limit: int):
    """The reader's (index, time, rgb) frames, first `limit` only when limit > 0; decode errors -> BadInputError."""
    import av

    try:
        for index, t, rgb in reader:
            if limit and index >= limit:
                return
            yield index, t, rgb
    except av.error.FFmpegError as e:
        raise BadInputError(path, f"corrupt video ({e})") from None
    # The reader stops quietly at the first undecodable packet; a swap must not pass a cut-short video off
    # as complete.
    if reader.error:
        raise BadInputError(path, f"corrupt video: {reader.error}")


def swap_video(path: Path, output: Path, model: SwapModel, cfg: SwapConfig, progress: bool = True) -> SwapSummary:
    from tqdm import tqdm

    from deepfake.io.video import VideoReader

    start = time.perf_counter()
    analyzer = _analyzer(model, cfg)
    swapper = _swapper(model, cfg, analyzer, analyzer.new_smoother())
    summary = SwapSummary(output, "video")
    with VideoReader(path) as reader:
        fps = _exact_fps(path, reader.fps)
        total = reader.frame_count or None
        if cfg.frames:
            total = min(total, cfg.frames) if total else cfg.frames
        # Frames keep the source's times and the audio the same origin, so variable-rate video and video
        # that starts after its audio stay in sync.
        writer = lambda target: VideoWriter(  # noqa: E731  (opened on the signing stage's path)
            target, fps, reader.width, reader.height, crf=cfg.crf, preset=cfg.preset,
            audio_from=path if reader.has_audio else None, audio_origin=reader.origin,
            time_base=reader.time_base, metadata=video_tags(_record(model, cfg, path)),
        )
        with (signed_output(output, _credential(model, cfg, path, output)) as target, writer(target) as out,
              tqdm(total=total, desc="swap", unit="frame", disable=not progress) as bar):
            encode = BackgroundWriter(lambda item: out.write(*item), depth=max(1, cfg.batch), name="swap-encode")
            end = None
            try:
                for result in swapper.swap_frames(_frames(reader, path, cfg.frames)):
                    _count(summary, result)
                    encode.put((add_watermark(result.frame) if cfg.watermark else result.frame, result.time))
                    end = result.time + 1 / float(fps)
                    bar.update(1)
            finally:
                encode.close()
            if cfg.frames:
                out.audio_until = end  # the audio stops with the last frame written
            if summary.frames == 0:
                raise BadInputError(path, "no frames could be decoded")
            if summary.frames_with_face == 0:
                raise BadInputError(path, f"no face found in any of its {summary.frames} frames")
            if summary.frames_swapped == 0:
                raise BadInputError(
                    path, "no face in it matches the model's identity (use --all-faces, or check --direction)"
                )
    summary.seconds = time.perf_counter() - start
    save_json(cfg, output.with_name(output.name + ".swap.json"))
    return summary


def _count(summary: SwapSummary, result: FrameResult) -> None:
    summary.frames += 1
    summary.frames_with_face += result.found > 0
    summary.frames_swapped += result.swapped > 0
    summary.faces_swapped += result.swapped


def preview_video(path: Path, output: Path, model: SwapModel, cfg: SwapConfig) -> SwapSummary:
    """A quick look before a long render: a PNG sheet of frames spread over the video (output .png), or
    a side-by-side MP4 of its first `preview_seconds` (any video suffix)."""
    from deepfake.io.video import VideoReader

    start = time.perf_counter()
    analyzer = _analyzer(model, cfg)
    summary = SwapSummary(output, "preview")
    record = _record(model, cfg, path)
    with VideoReader(path) as reader:
        if output.suffix.lower() == ".png":
            n = max(1, reader.frame_count or 1)
            wanted = set(np.linspace(0, n - 1, max(1, cfg.preview_frames)).round().astype(int).tolist())
            swapper = _swapper(model, cfg, analyzer)
            pairs = []
            for index, _, rgb in _frames(reader, path, 0):
                if index not in wanted:
                    continue
                result = swapper.swap_image(rgb, keep_original=True)
                _count(summary, result)
                if result.swapped:
                    pairs.append((result.original, result.frame))
            if not pairs:
                raise BadInputError(path, f"no swappable face in the {summary.frames} sampled frames")
            with signed_output(output, _credential(model, cfg, path, output)) as target:
                save_labelled_image(target, sheet(pairs), record)
        else:
            fps = _exact_fps(path, reader.fps)
            limit = max(1, round(cfg.preview_seconds * float(fps)))
            swapper = _swapper(model, dataclasses.replace(cfg, frames=limit), analyzer, analyzer.new_smoother())
            w = reader.width * 2 + 4
            with signed_output(output, _credential(model, cfg, path, output)) as target, VideoWriter(
                    target, fps, w + (w % 2), reader.height + (reader.height % 2), crf=cfg.crf,
                    preset=cfg.preset, metadata=video_tags(record), time_base=reader.time_base) as writer:
                for result in swapper.swap_frames(_frames(reader, path, limit), keep_original=lambda i: True):
                    _count(summary, result)
                    before = result.original if result.original is not None else result.frame
                    row = side_by_side(before, result.frame)
                    row = np.pad(row, ((0, reader.height % 2), (0, w % 2), (0, 0)))
                    writer.write(row, result.time)
                if summary.frames_swapped == 0:
                    raise BadInputError(path, f"no swappable face in its first {summary.frames} frames")
    summary.seconds = time.perf_counter() - start
    return summary
