"""Metric sanity on real faces from ../shared/media, and the metric definitions on synthetic arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from deepfake.evaluate import metrics
from conftest import media_path


def _frames(name: str, indices: list[int]) -> dict[int, np.ndarray]:
    """RGB frames by index (OpenCV decode: the test does not depend on the video reader under test elsewhere)."""
    import cv2

    cap = cv2.VideoCapture(str(media_path(name)))
    out, index = {}, 0
    while len(out) < len(indices):
        ok, bgr = cap.read()
        assert ok, f"{name}: could not read frame {index}"
        if index in indices:
            out[index] = bgr[..., ::-1].copy()
        index += 1
    cap.release()
    return out


@dataclass
class _Face:
    landmarks: np.ndarray  # (68, 2) source px
    embedding: np.ndarray  # (128,)
    image: np.ndarray  # aligned (128, 128, 3)
    mask: np.ndarray  # aligned hull mask (128, 128)


class _Faces:
    """The extract stage's detector, 68-point predictor and ResNet embedder, loaded once for the module."""

    def __init__(self):
        from deepfake.faces.detect import FaceDetector
        from deepfake.faces.identity import FaceEmbedder
        from deepfake.faces.landmarks import LandmarkPredictor

        self.detector, self.predictor, self.embedder = FaceDetector("hog"), LandmarkPredictor(), FaceEmbedder()

    def one(self, rgb: np.ndarray) -> _Face:
        from deepfake.faces.align import align_matrix, transform_points, warp_face
        from deepfake.faces.hull import hull_mask

        dets = self.detector.detect(rgb)
        assert len(dets) == 1, f"expected one face, found {len(dets)}"
        lm = self.predictor(rgb, dets[0].bbox)
        m = align_matrix(lm, 128, 0.75)
        return _Face(lm, self.embedder.embed(rgb, lm), warp_face(rgb, m, 128), hull_mask(transform_points(lm, m), 128))


@pytest.fixture(scope="module")
def faces():
    return _Faces()


@pytest.fixture(scope="module")
def real(faces):
    a = _frames("d6.mp4", [0, 300])
    b = _frames("d14.mp4", [0])
    return {
        "a0": (a[0], faces.one(a[0])),
        "a300": (a[300], faces.one(a[300])),
        "b0": (b[0], faces.one(b[0])),
    }


# ----------------------------------------------------------------------------------------------------
# Real faces.


def test_same_person_closer_than_different_people(real):
    ea, ea2, eb = (np.asarray(real[k][1].embedding) for k in ("a0", "a300", "b0"))
    same = metrics.embedding_distances(ea2[None], ea)[0]
    other = metrics.embedding_distances(eb[None], ea)[0]
    print(f"identity distance: same person {same:.3f}, different people {other:.3f}")
    assert same < other
    # The 0.6 verifier accepts the same person and rejects the other one.
    assert metrics.verification_rate([same]) == 1.0
    assert metrics.verification_rate([other]) == 0.0


def test_ssim_of_face_with_itself_is_one(real):
    face = real["a0"][1]
    assert metrics.masked_ssim(face.image, face.image, face.mask) == pytest.approx(1.0, abs=1e-6)
    assert metrics.masked_psnr(face.image, face.image, face.mask) == metrics.PSNR_CAP_DB
    # A different frame of the same person is similar but not identical, a different person less so.
    same = metrics.masked_ssim(face.image, real["a300"][1].image, face.mask)
    other = metrics.masked_ssim(face.image, real["b0"][1].image, face.mask)
    assert 0 < other < 1 and 0 < same < 1
    assert metrics.masked_psnr(face.image, real["a300"][1].image, face.mask) < metrics.PSNR_CAP_DB


def test_landmark_error_of_face_with_itself_is_zero(real):
    lm = np.asarray(real["a0"][1].landmarks)
    assert metrics.landmark_error(lm, lm) == 0.0
    # Moving every point by one inter-ocular distance gives an error of exactly 1.
    iod = metrics.inter_ocular(lm)
    assert metrics.landmark_error(lm, lm + [iod, 0.0]) == pytest.approx(1.0)
    assert metrics.landmark_error(lm, np.asarray(real["a300"][1].landmarks)) > 0


def test_pose_error_grows_with_in_plane_rotation(real, faces):
    import cv2

    from deepfake.faces.pose import estimate_pose

    rgb, face = real["a0"]
    lm = np.asarray(face.landmarks)
    centre = tuple(float(v) for v in lm.mean(axis=0))
    base = estimate_pose(lm, rgb.shape)
    errors = []
    for angle in (5.0, 10.0, 20.0):
        # cv2 rotates counter-clockwise on screen for a positive angle; the face is found again from pixels.
        m = cv2.getRotationMatrix2D(centre, angle, 1.0)
        rotated = cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        turned = faces.one(rotated)
        err = metrics.pose_error(base, estimate_pose(np.asarray(turned.landmarks), rotated.shape))
        print(f"rotated {angle:4.1f} deg: roll error {err['roll']:.2f}, yaw {err['yaw']:.2f}, pitch {err['pitch']:.2f}")
        assert abs(err["roll"] - angle) <= 2.0
        errors.append(err["mean"])
    assert errors[0] < errors[1] < errors[2]


def test_sharpness_ranks_a_blurred_face_below_the_sharp_one(real):
    import cv2

    face = real["a0"][1]
    assert metrics.sharpness_ratio(face.image, face.image, face.mask) == 1.0  # exactly: the same sums
    ratios = [metrics.sharpness_ratio(cv2.GaussianBlur(face.image, (0, 0), s), face.image, face.mask) for s in (0.7, 1.5, 3.0)]
    print("sharpness ratio of the face blurred by sigma 0.7, 1.5, 3.0: " + ", ".join(f"{r:.3f}" for r in ratios))
    assert 1.0 > ratios[0] > ratios[1] > ratios[2] > 0
    # SSIM barely minds the mildest blur; the sharpness ratio does.
    assert metrics.masked_ssim(cv2.GaussianBlur(face.image, (0, 0), 0.7), face.image, face.mask) > 0.9 > ratios[0]
    # Noise is more high-frequency content than the real face: above 1.
    noisy = np.clip(face.image + np.random.default_rng(0).normal(0, 8, face.image.shape), 0, 255).astype(np.uint8)
    assert metrics.sharpness_ratio(noisy, face.image, face.mask) > 1.0
    assert metrics.mean_sharpness_ratio([face.image] * 2, [face.image] * 2, [face.mask] * 2) == 1.0


def test_retrieval_finds_the_source_among_real_identities(real):
    """Gallery of real identities: A (d6 frame 0), B (d14 frame 0); frame 300 of A is retrieved as A."""
    gallery = np.stack([real["a0"][1].embedding, real["b0"][1].embedding])  # (2, 128)
    probe = np.asarray(real["a300"][1].embedding)[None]
    assert metrics.nearest_identity(probe, gallery).tolist() == [0]
    assert metrics.retrieval_rate(metrics.nearest_identity(probe, gallery), 0) == 1.0
    assert metrics.retrieval_rate(metrics.nearest_identity(probe, gallery), 1) == 0.0


# ----------------------------------------------------------------------------------------------------
# Definitions on arrays.


def test_laplacian_variance_definition():
    rng = np.random.default_rng(3)
    img = rng.random((32, 32, 3)).astype(np.float32)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    inner = grey[1:-1, 1:-1]
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * inner  # interior pixels
    mask = np.zeros((32, 32), np.uint8)
    mask[1:-1, 1:-1] = 255
    assert metrics.laplacian_variance(img, mask) == pytest.approx(float(lap.var()), rel=1e-5)
    assert metrics.laplacian_variance(np.full((16, 16, 3), 0.5, np.float32)) == 0.0
    assert np.isnan(metrics.sharpness_ratio(img[:16, :16], np.full((16, 16, 3), 0.5, np.float32)))


def test_retrieval_on_planted_embeddings():
    rng = np.random.default_rng(4)
    source, target, other = rng.normal(size=(3, 128))
    gallery = np.stack([source, target, other])
    swaps = np.stack([source, 2.5 * source, target, 0.9 * source + 0.1 * target])
    nearest = metrics.nearest_identity(swaps, gallery)
    # Equal to the source mean, or a multiple of it (cosine ignores length), or mostly the source: retrieved.
    assert nearest.tolist() == [0, 0, 1, 0]
    assert metrics.retrieval_rate(nearest, 0) == 0.75
    # A distractor identical to the source ties with it at the top: a tie names nobody, so the swaps
    # that were retrieved become misses, whichever order the gallery is in.
    for order in ([0, 1, 2, 3], [3, 1, 2, 0]):
        twin = np.stack([source, target, other, source])[order]
        nearest = metrics.nearest_identity(swaps, twin)
        assert nearest.tolist() == [-1, -1, 1, -1]
        assert metrics.retrieval_rate(nearest, order.index(0)) == 0.0
    assert np.isnan(metrics.retrieval_rate(np.zeros(0, int), 0))




def test_masked_metrics_only_look_inside_the_mask():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64, 3)).astype(np.float32)
    b = a.copy()
    b[:, 32:] = rng.random((64, 32, 3))  # damage only the right half
    left = np.zeros((64, 64), np.uint8)
    left[:, :20] = 255
    assert metrics.masked_psnr(a, b, left) == metrics.PSNR_CAP_DB
    assert metrics.masked_psnr(a, b) < 20
    assert metrics.masked_ssim(a, b, left) > metrics.masked_ssim(a, b) + 0.2
    # PSNR of a known error: a constant offset of 0.1 -> MSE 0.01 -> 20 dB.
    z = np.zeros((8, 8, 3), np.float32)
    assert metrics.masked_psnr(z, z + 0.1) == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(ValueError):
        metrics.masked_ssim(a, b, np.zeros((64, 64), np.uint8))


def test_angle_difference_wraps():
    assert metrics.angle_difference(179, -179) == pytest.approx(2.0)
    assert metrics.pose_error({"yaw": 10, "pitch": 0, "roll": -5}, {"yaw": 4, "pitch": 3, "roll": 5}) == {
        "yaw": 6.0, "pitch": 3.0, "roll": 10.0, "mean": pytest.approx(19 / 3),
    }


def test_flicker_ratio():
    rng = np.random.default_rng(1)
    base = rng.random((32, 32, 3)).astype(np.float32)
    steady = [base + 0.01 * t for t in range(5)]
    noisy = [np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32) for _ in range(5)]
    assert metrics.flicker_ratio(steady, steady) == pytest.approx(1.0)
    assert metrics.flicker_ratio(noisy, steady) > 2.0


def test_roc_auc_matches_pairwise_definition():
    rng = np.random.default_rng(2)
    scores = np.round(rng.normal(size=300), 1)  # rounding makes ties
    labels = rng.random(300) < 0.4
    scores[labels] += 0.7
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert metrics.roc_auc(scores, labels) == pytest.approx(pairwise)
    assert metrics.roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert metrics.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert np.isnan(metrics.roc_auc([0.5, 0.6], [1, 1]))
    assert metrics.accuracy([0.9, 0.4, 0.6, 0.1], [1, 1, 0, 0]) == 0.5
