"""FaceEmbedder (dlib's ResNet in torch, batched) against dlib's own compute_face_descriptor on real faces,
its batched paths against its single-face path, and the analyzer's deferred, cross-frame batches."""

from __future__ import annotations

import dlib
import numpy as np
import pytest

from conftest import media_path
from deepfake.config import ExtractConfig
from deepfake.faces.analyzer import FaceAnalyzer
from deepfake.faces.dlib_models import RESNET, SHAPE_68, dlib_model_path
from deepfake.faces.identity import FaceEmbedder
from deepfake.io.images import read_image
from deepfake.io.video import VideoReader


def cosine(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def first_frame(clip: str) -> np.ndarray:
    with VideoReader(media_path(clip), stop=1) as v:
        return next(iter(v))[2]


@pytest.fixture(scope="module")
def dlib_models():
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path(SHAPE_68))),
            dlib.face_recognition_model_v1(str(dlib_model_path(RESNET))))


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder("cpu")


@pytest.fixture(scope="module")
def real_faces(dlib_models):
    """(image, dlib shape, landmarks (68, 2), dlib's descriptor) for faces of five people, plus one
    face cut by the image's edge."""
    detector, predictor, resnet = dlib_models
    images = [first_frame(c) for c in ("d6.mp4", "d14.mp4", "d3.mp4")]
    images += [read_image(media_path(n)) for n in ("d9.jpg", "s0.jpg")]
    d6 = images[0]
    shape = predictor(d6, detector(d6, 1)[0])
    cut = shape.part(30).x  # the nose tip: the crop's left edge runs through the face
    images.append(np.ascontiguousarray(d6[:, cut - 20 :]))
    faces = []
    for rgb in images:
        dets = detector(rgb, 1)
        if rgb is images[-1]:  # HOG may miss a half face: its landmarks come from the full frame, shifted
            box = dlib.rectangle(shape.rect.left() - cut + 20, shape.rect.top(), shape.rect.right() - cut + 20, shape.rect.bottom())
        else:
            assert dets, "no face found"
            box = dets[0]
        s = predictor(rgb, box)
        lm = np.array([(p.x, p.y) for p in s.parts()], dtype=np.float32)
        faces.append((rgb, s, lm, np.asarray(resnet.compute_face_descriptor(rgb, s), np.float32)))
    return faces


def test_embedder_matches_dlibs_compute_face_descriptor_on_real_faces(embedder, real_faces):
    for rgb, _, lm, ref in real_faces:
        ours = embedder.embed(rgb, lm)
        assert ours.shape == (128,) and ours.dtype == np.float32
        assert cosine(ours, ref) >= 0.9999, rgb.shape
        assert np.linalg.norm(ours - ref) < 0.01  # 60x below the 0.6 threshold


def test_batched_paths_give_the_single_face_embeddings(embedder, real_faces):
    single = np.stack([embedder.embed(rgb, lm) for rgb, _, lm, _ in real_faces])
    # One image per face, of different sizes.
    many = embedder.embed_many([rgb for rgb, _, _, _ in real_faces], [lm for _, _, lm, _ in real_faces])
    np.testing.assert_allclose(many, single, atol=1e-5)
    # One (N, H, W, 3) array: one face_chips call per batch.
    same = [i for i, f in enumerate(real_faces) if f[0].shape == real_faces[1][0].shape]  # d14, d3: 512 px
    assert len(same) >= 2
    arr = embedder.embed_many(np.stack([real_faces[i][0] for i in same]), [real_faces[i][2] for i in same])
    np.testing.assert_allclose(arr, single[same], atol=1e-5)
    # Two faces in one frame, side by side.
    (a, _, lm_a, _), (b, _, lm_b, _) = real_faces[0], real_faces[1]
    h = max(a.shape[0], b.shape[0])
    frame = np.zeros((h, a.shape[1] + b.shape[1], 3), np.uint8)
    frame[: a.shape[0], : a.shape[1]], frame[: b.shape[0], a.shape[1] :] = a, b
    both = embedder.embed_many(frame, [lm_a, lm_b + np.array([a.shape[1], 0], np.float32)])
    assert both.shape == (2, 128)
    assert cosine(both[0], single[0]) > 0.99999 and cosine(both[1], single[1]) > 0.99999
    assert embedder.embed_many(frame, []).shape == (0, 128)


def test_analyzer_defers_embeddings_to_one_batch(monkeypatch):
    analyzer = FaceAnalyzer(ExtractConfig(size=64, device="cpu"))
    images = [read_image(media_path(n)) for n in ("d9.jpg", "s0.jpg", "d30.jpg")]
    now = [analyzer.analyze(rgb)[0].embedding for rgb in images]
    calls = []
    real = analyzer.embedder.embed_chips
    monkeypatch.setattr(analyzer.embedder, "embed_chips", lambda chips: calls.append(len(chips)) or real(chips))
    later = [analyzer.analyze(rgb, defer_embedding=True)[0] for rgb in images]
    assert all(f.embedding is None for f in later) and analyzer.pending_embeddings() == 3 and calls == []
    analyzer.flush_embeddings()
    assert calls == [3] and analyzer.pending_embeddings() == 0
    for f, e in zip(later, now):
        np.testing.assert_allclose(f.embedding, e, atol=1e-5)


def test_a_tracked_face_shares_one_embedding_until_it_is_refreshed():
    cfg = ExtractConfig(size=64, device="cpu", embed_every=5)
    analyzer = FaceAnalyzer(cfg)
    smoother = analyzer.new_smoother()
    faces = []
    with VideoReader(media_path("d18.mp4"), stop=12) as v:
        for _, t, rgb in v:
            faces += analyzer.analyze(rgb, smoother, t, defer_embedding=True)
    assert len(faces) == 12 and analyzer.pending_embeddings() == 3  # frames 0, 5 and 10 (at 30 fps)
    analyzer.flush_embeddings()
    groups = [faces[0:5], faces[5:10], faces[10:12]]
    for g in groups:
        assert all(f.embedding is g[0].embedding for f in g)
    assert len({id(g[0].embedding) for g in groups}) == 3
