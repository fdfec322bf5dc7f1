"""The training data path: a faceset decoded once into uint8 tensors, sampled by index on the device.

faceswap and DFL decode and warp every face on CPU workers each step, and the GPU waits ("GPU usage is
less than 20%", faceswap #811). Here the PNGs are decoded once into a uint8 cache on disk
(`FACESET/.cache/r<R>-<hash>/`, memory-mapped `.npy`, never pickled), moved to the GPU once (a 64 px set
of 10k faces is 120 MiB), and each batch is a single `index_select` on the device. Augmentation then runs
batched in torch on the same device (augment.py), so no CPU worker sits in the training loop.

    cache = FaceCache.from_faceset("faceset_a", resolution=64).pin().to("cuda")
    for batch in cache.batches(None, 32, generator):      # infinite, epoch-shuffled
        x = batch.images.float() / 255                     # (B, 3, R, R)

The samplers are faceset/sampler.py; which masks a cache holds, faceset/mask_files.py; what its key covers
(the manifest, the masks and every image file's size and modification time), faceset/cache_key.py.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from deepfake.errors import DeepfakeError
from deepfake.faceset import Faceset, FaceRecord, read_faceset
from deepfake.faceset.cache_key import CACHE_FORMAT, cache_key, stale_reason, write_key
from deepfake.faceset.mask_files import MaskSource, mask_file, read_mask
from deepfake.faceset.sampler import EpochSampler, Sampler, host_to_device  # noqa: F401 (train/ imports them from here)
from deepfake.io.atomic import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

CACHE_FOLDER = ".cache"


@dataclass
class FaceBatch:
    images: torch.Tensor  # (B, 3, R, R) uint8 RGB
    masks: torch.Tensor  # (B, 1, R, R) uint8, 255 = face
    landmarks: torch.Tensor  # (B, 68, 2) float32, R-pixel units
    indices: torch.Tensor  # (B,) int64, rows of the cache (records[i] is the face)


class FaceCache:
    """A faceset as uint8 tensors: images (N,3,R,R), masks (N,1,R,R), landmarks (N,68,2) in R-px units."""

    def __init__(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        landmarks: torch.Tensor,
        records: list[FaceRecord],
        cache_path: Path | None = None,
    ):
        n = len(records)
        if images.shape[0] != n or masks.shape[0] != n or landmarks.shape[0] != n:
            raise ValueError(f"cache rows disagree: {images.shape[0]}, {masks.shape[0]}, {landmarks.shape[0]} vs {n} records")
        self.images = images  # (N, 3, R, R) uint8
        self.masks = masks  # (N, 1, R, R) uint8
        self.landmarks = landmarks  # (N, 68, 2) float32
        self.records = records
        self.cache_path = cache_path  # the on-disk cache folder these tensors map, if any

    # ------------------------------------------------------------------------------------------------
    # Building.

    @classmethod
    def from_faceset(
        cls,
        faceset: str | os.PathLike | Faceset,
        resolution: int,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
        masks: MaskSource | None = None,
    ) -> "FaceCache":
        """Decode a faceset at `resolution`, or map its cache from disk when nothing it was made of changed.

        cache_dir: where the `r<R>-<hash>` folder lives; default `FACESET/.cache`. The hash covers the
        manifest bytes, the masks and each image file's size and modification time (cache_key.py), so
        faces added, removed, re-extracted or edited in place rebuild it, and the rebuild logs what
        changed in one line; the cache it replaces in the faceset's own folder is removed. masks: which
        masks (default: the hulls extract wrote). Unreadable face or mask files are skipped with a
        warning (and left out of `.records`).
        """
        fs = faceset if isinstance(faceset, Faceset) else read_faceset(faceset)
        if len(fs) == 0:
            raise DeepfakeError(f"{fs.root}: faceset has no faces")
        if resolution < 8:
            raise DeepfakeError(f"resolution {resolution} is too small for training")
        masks = masks or MaskSource()
        folder = Path(cache_dir) if cache_dir is not None else fs.root / CACHE_FOLDER
        key = cache_key(fs, masks)
        path = folder / f"r{resolution}-{key.digest}"
        arrays = _load_cache(path)
        if arrays is None:
            previous, why = stale_reason(folder, resolution, key, fs.root)
            if why is not None:
                log.info("%s: rebuilding the %d px face cache: %s", fs.root, resolution, why)
            _build_cache(fs, resolution, path, progress, masks)
            write_key(path, key, fs.root)
            arrays = _load_cache(path)
            if arrays is None:
                raise DeepfakeError(f"{path}: face cache could not be read back after writing it")
            if previous is not None and folder == fs.root / CACHE_FOLDER:
                # Superseded: nothing of this faceset can match it again. A process still mapping it
                # keeps its pages (the files go only when the last mapping does).
                shutil.rmtree(previous, ignore_errors=True)
        images, masks, landmarks, kept = arrays
        records = [fs.records[i] for i in kept]
        return cls(_as_tensor(images), _as_tensor(masks), _as_tensor(landmarks), records, cache_path=path)

    # ------------------------------------------------------------------------------------------------
    # Placement.

    def __len__(self) -> int:
        return len(self.records)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def pin(self) -> "FaceCache":
        """Copy into page-locked host memory, so host->GPU copies are asynchronous. A no-op without CUDA."""
        if not torch.cuda.is_available() or self.images.device.type != "cpu":
            return self
        return self._replace(self.images.pin_memory(), self.masks.pin_memory(), self.landmarks.pin_memory())

    def to(self, device: str | torch.device, non_blocking: bool = True) -> "FaceCache":
        """The whole cache on `device` (one copy; afterwards every batch is gathered there)."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        return self._replace(
            self.images.to(device, non_blocking=non_blocking),
            self.masks.to(device, non_blocking=non_blocking),
            self.landmarks.to(device, non_blocking=non_blocking),
        )

    def subset(self, indices: np.ndarray | list[int] | torch.Tensor) -> "FaceCache":
        """Rows `indices` as a new cache on the same device (e.g. the train or validation split)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64) if not torch.is_tensor(indices) else indices)
        rows = idx.tolist()
        idx = idx.to(self.device)
        return FaceCache(
            self.images.index_select(0, idx),
            self.masks.index_select(0, idx),
            self.landmarks.index_select(0, idx),
            [self.records[i] for i in rows],
        )

    def _replace(self, images: torch.Tensor, masks: torch.Tensor, landmarks: torch.Tensor) -> "FaceCache":
        return FaceCache(images, masks, landmarks, self.records, self.cache_path)

    # ------------------------------------------------------------------------------------------------
    # Sampling.

    def gather(self, indices: torch.Tensor, device: str | torch.device | None = None) -> FaceBatch:
        """Rows `indices` (B,) as a batch on `device` (default: where the cache is)."""
        device = self.device if device is None else torch.device(device)
        idx = host_to_device(indices, self.device)  # (B,)
        rows = (self.images.index_select(0, idx), self.masks.index_select(0, idx), self.landmarks.index_select(0, idx))
        # Streaming from host memory: the gathered rows go over pinned, so the copy overlaps compute.
        images, masks, landmarks = (host_to_device(t, device) for t in rows)  # (B,3,R,R), (B,1,R,R), (B,68,2)
        return FaceBatch(images, masks, landmarks, host_to_device(indices, device))

    def batches(
        self,
        indices: torch.Tensor | np.ndarray | list[int] | None,
        batch: int,
        generator: torch.Generator,
        device: str | torch.device | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[FaceBatch]:
        """Endless random batches of `batch` faces drawn from rows `indices` (None = all rows).

        Rows are shuffled once per epoch with `generator` (a CPU generator) and every batch is full (an
        epoch's remainder is carried into the next one): the training loop's EpochSampler, whose order
        goes to the cache's device once per epoch.

        Data-parallel: every rank passes the same `generator` seed; each step a global batch of
        `batch * world_size` rows is drawn and rank r takes slice r. The ranks together then see exactly
        the batch a single process would see with `batch * world_size`.
        """
        sampler = Sampler(len(self) if indices is None else indices, batch * world_size, generator, self.device)
        for rows in sampler:
            yield self.gather(rows[rank * batch : (rank + 1) * batch], device)


# ----------------------------------------------------------------------------------------------------
# The on-disk cache.


def decode_face(root: Path, record: FaceRecord, resolution: int, masks: MaskSource | None = None,
                size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One aligned face and its mask at `resolution`: (3, R, R) uint8 RGB and (1, R, R) uint8.
    size: the aligned size, for a hull drawn from the landmarks (default: the record's).

    Raises DeepfakeError naming the file when it can't be read.
    """
    image = cv2.imread(str(root / record.file), cv2.IMREAD_COLOR)
    if image is None:
        raise DeepfakeError(f"{root / record.file}: unreadable face image")
    masks = masks or MaskSource()
    mask = read_mask(root, record, masks, record.size or size or image.shape[0])
    if mask is None:
        raise DeepfakeError(f"{root / mask_file(record, masks.kind)}: unreadable mask image")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image, mask = _resize(image, resolution), _resize(mask, resolution)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), mask[None]


def _resize(image: np.ndarray, resolution: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (resolution, resolution):
        return image
    # INTER_AREA averages when shrinking (no aliasing); it degrades to bilinear-like when enlarging.
    interp = cv2.INTER_AREA if resolution < min(h, w) else cv2.INTER_LINEAR
    return cv2.resize(image, (resolution, resolution), interpolation=interp)


def _build_cache(fs: Faceset, resolution: int, path: Path, progress: bool, masks: MaskSource) -> None:
    """Decode every face into memory-mapped .npy files under `path`, each written atomically.

    meta.json is written last: a cache folder without it (a killed build) is ignored and rebuilt.
    """
    from tqdm import tqdm

    n = len(fs)
    path.mkdir(parents=True, exist_ok=True)
    landmarks = np.zeros((n, 68, 2), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    skipped: list[str] = []
    with atomic_path(path / "images.npy") as img_tmp, atomic_path(path / "masks.npy") as mask_tmp:
        # Decode straight into the on-disk arrays, so a set larger than RAM never sits in memory.
        images = np.lib.format.open_memmap(img_tmp, mode="w+", dtype=np.uint8, shape=(n, 3, resolution, resolution))
        mask_rows = np.lib.format.open_memmap(mask_tmp, mode="w+", dtype=np.uint8, shape=(n, 1, resolution, resolution))

        def work(i: int) -> tuple[int, str | None]:
            rec = fs.records[i]
            try:
                images[i], mask_rows[i] = decode_face(fs.root, rec, resolution, masks, fs.size)
            except DeepfakeError as e:
                return i, str(e)
            lm = np.asarray(rec.aligned_landmarks, dtype=np.float32).reshape(68, 2)  # (68, 2) aligned px
            landmarks[i] = lm * (resolution / float(rec.size or fs.size))
            return i, None

        # cv2 releases the GIL while decoding, so threads use every core.
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
            results = pool.map(work, range(n))
            for i, err in tqdm(results, total=n, desc=f"caching faces {fs.root.name}", disable=not progress, leave=False):
                if err is None:
                    ok[i] = True
                else:
                    skipped.append(err)
        kept = np.flatnonzero(ok)
        if kept.size == 0:
            raise DeepfakeError(f"{fs.root}: no readable faces ({skipped[0]})")
        if kept.size < n:
            # Compact the good rows to the front; the arrays are then cut to `kept.size` rows.
            images[: kept.size] = images[kept]
            mask_rows[: kept.size] = mask_rows[kept]
        images.flush()
        mask_rows.flush()
        del images, mask_rows
        if kept.size < n:
            _truncate_npy(img_tmp, kept.size)
            _truncate_npy(mask_tmp, kept.size)
    with atomic_path(path / "landmarks.npy") as tmp:
        np.save(tmp, landmarks[kept])
    for err in skipped:
        log.warning("skipped face: %s", err)
    atomic_write_json(
        path / "meta.json",
        {"format": CACHE_FORMAT, "resolution": resolution, "faces": int(kept.size), "kept": kept.tolist(), "skipped": skipped},
    )


def _truncate_npy(path: Path, rows: int) -> None:
    """Rewrite an .npy file to its first `rows` rows (after compaction), keeping it a valid .npy."""
    old = np.load(path, mmap_mode="r", allow_pickle=False)
    tmp = path.with_name(path.name + ".part.npy")
    new = np.lib.format.open_memmap(tmp, mode="w+", dtype=old.dtype, shape=(rows, *old.shape[1:]))
    new[:] = old[:rows]
    new.flush()
    del new, old
    os.replace(tmp, path)


def _load_cache(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]] | None:
    """Memory-map a finished cache folder, or None when it is missing, partial or of another format."""
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("format") != CACHE_FORMAT:
        return None
    try:
        # Copy-on-write mapping: pages are read lazily from disk, and an accidental in-place write
        # lands in private memory instead of corrupting the cache (or faulting on a read-only map).
        images = np.load(path / "images.npy", mmap_mode="c", allow_pickle=False)
        masks = np.load(path / "masks.npy", mmap_mode="c", allow_pickle=False)
        landmarks = np.load(path / "landmarks.npy", mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        return None
    n, r = int(meta["faces"]), int(meta["resolution"])
    if images.shape != (n, 3, r, r) or masks.shape != (n, 1, r, r) or landmarks.shape != (n, 68, 2):
        return None
    return images, masks, landmarks, [int(i) for i in meta["kept"]]


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array)  # shares the mapping: no copy, pages load on first touch
