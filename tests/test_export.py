"""`deepfake export` on a model trained on real faces: the DFM contract's names and shapes, parity with
PyTorch, the metadata, fp16, and both peers' ways of running the file (DeepFaceLive's loader, FaceFusion's
deep_swapper cut/run/paste), which must put A's identity on held-out frames of B's clip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import media_path
from deepfake.cli import main
from deepfake.config import ExportConfig
from deepfake.export.crop import DFL_WHOLE_FACE, dfl_to_ours, five_points, our_five_fractions, ours_to_dfl
from deepfake.export.graph import INPUT, OUTPUTS, ContractGraph
from deepfake.export.write import export_model
from deepfake.io.video import VideoReader
from trained_pair import trained_model

HELD_OUT = list(range(120, 520, 40))  # frames of d14.mp4 past the 60 its faceset was made of


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, faceset_a, faceset_b):
    return trained_model(tmp_path_factory, faceset_a, faceset_b)


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", "-m", str(model_dir), "-o", str(out / "ab.dfm")]) == 0
    assert main(["export", "-m", str(model_dir), "-o", str(out / "ab.onnx")]) == 0
    return out


@pytest.fixture(scope="module")
def b_frames():
    """Held-out frames of B's clip, BGR as FaceFusion reads them."""
    frames = []
    with VideoReader(media_path("d14.mp4")) as r:
        for i, _, rgb in r:
            if i in HELD_OUT:
                frames.append(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if i >= HELD_OUT[-1]:
                break
    return frames


@pytest.fixture(scope="module")
def analyzer():
    from deepfake.faces.analyzer import FaceAnalyzer
    from deepfake.swap.pipeline import analyzer_config

    return FaceAnalyzer(analyzer_config(128, 0.75), with_embedding=True)


# ----------------------------------------------------------------------------------------------------
# Geometry.


def test_the_crops_map_onto_each_other_and_back():
    m, inv = dfl_to_ours(224, 128, 0.75), ours_to_dfl(128, 224, 0.75)
    pts = DFL_WHOLE_FACE * 224
    ours = pts @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(ours @ inv[:, :2].T + inv[:, 2], pts, atol=1e-9)
    # The template's points land near our canonical face's (a least-squares fit of two similar faces).
    err = np.linalg.norm(ours / 128 - our_five_fractions(0.75), axis=1)
    assert err.max() < 0.03, err
    # Our crop is the tighter one: the DFL crop's eye distance is smaller.
    assert np.linalg.norm(ours[1] - ours[0]) / 128 > DFL_WHOLE_FACE[1, 0] - DFL_WHOLE_FACE[0, 0]


class _IdentityModel(torch.nn.Module):
    """An autoencoder that returns its input (and a full mask), keeping what it was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def encode(self, x):
        self.seen.append(x)
        return x

    def decode(self, z, side):
        return z, torch.ones_like(z[:, :1])


def _centroid(img):
    ys, xs = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return np.array([(img * xs).sum(), (img * ys).sum()]) / img.sum()


@pytest.mark.parametrize("resolution", [64, 96, 128, 224])
def test_the_dfm_resampling_moves_no_point_of_the_face(resolution):
    """A blob in the DFL crop reaches the model where the crops' similarity puts it in ours, and an
    identity model's output puts it back where it was: a sub-pixel shift would move every swapped face."""
    ae = _IdentityModel()
    graph = ContractGraph(ae, "b", "a", resolution, "dfl", 0.75).eval()
    d = graph.size  # 256, 288, 256, 224: pooled 4x, 3x, 2x, not at all
    c = np.array([0.47 * d + 0.3, 0.55 * d - 0.2])  # between pixel centres
    ys, xs = np.mgrid[0:d, 0:d]
    sigma = 2.0 * d / resolution  # 2 model px
    blob = np.exp(-((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
    with torch.no_grad():
        _, face, _ = graph(torch.from_numpy(np.repeat(blob[None, ..., None], 3, -1)))
    m = dfl_to_ours(d, resolution, 0.75)
    seen = _centroid(ae.seen[0][0, 0].numpy()) - (m[:, :2] @ c + m[:, 2])  # model px
    back = _centroid(face[0, ..., 0].numpy()) - c  # DFL-crop px
    print(f"\nR {resolution}, D {d}: the model's input off by {seen.round(3)} px, the output by {back.round(3)} px")
    assert np.abs(seen).max() < 0.02 and np.abs(back).max() < 0.02


# ----------------------------------------------------------------------------------------------------
# The file.


def test_the_file_follows_the_dfm_contract_and_says_what_it_is(exported, model_dir):
    proto = onnx.load(str(exported / "ab.dfm"))
    assert [i.name for i in proto.graph.input] == [INPUT]
    assert [o.name for o in proto.graph.output] == list(OUTPUTS)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 256, 256, 3] and proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["tool"] == "deepfake" and meta["version"]
    assert "synthetic" in meta["provenance"] and "synthetic" in meta["label"]
    assert json.loads(meta["model_config"])["model"]["resolution"] == 64
    assert meta["crop"] == "dfl_whole_face" and meta["color_order"] == "BGR"
    ours = {p.key: p.value for p in onnx.load(str(exported / "ab.onnx")).metadata_props}
    assert ours["crop"] == "deepfake" and ours["color_order"] == "RGB"
    # The batch is dynamic: N = 3 runs and keeps the outputs' order and shapes.
    sess = ort.InferenceSession(str(exported / "ab.dfm"), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {INPUT: np.random.default_rng(0).random((3, 256, 256, 3), dtype=np.float32)})
    assert [o.shape for o in outs] == [(3, 256, 256, 1), (3, 256, 256, 3), (3, 256, 256, 1)]
    assert all(0 <= o.min() and o.max() <= 1 for o in outs)


def _real_faces(analyzer, frames, size=64, dfl_size=256):
    """Aligned RGB faces of the held-out frames (our crop, `size`) and their DFL whole-face crops (BGR,
    `dfl_size`), 0..1."""
    ours, dfl = [], []
    for bgr in frames[:4]:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        face = analyzer.analyze(rgb)[0]
        ours.append(cv2.resize(face.aligned, (size, size), interpolation=cv2.INTER_AREA))
        five = five_points(face.landmarks)
        m = cv2.estimateAffinePartial2D(five, DFL_WHOLE_FACE * dfl_size, method=cv2.RANSAC, ransacReprojThreshold=100)[0]
        dfl.append(cv2.warpAffine(bgr, m, (dfl_size, dfl_size), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_AREA))
    return np.stack(ours).astype(np.float32) / 255, np.stack(dfl).astype(np.float32) / 255


def test_onnxruntime_matches_pytorch_on_real_faces(exported, model_dir, analyzer, b_frames):
    from deepfake.model_dir import load_model_dir

    ae = load_model_dir(model_dir).autoencoder.eval()
    ours, dfl = _real_faces(analyzer, b_frames)
    with torch.no_grad():
        # .onnx: our crop and RGB, against the autoencoder itself.
        x = torch.from_numpy(ours).permute(0, 3, 1, 2)
        rgb, mask = ae.swap(x, "a")
        _, own = ae.swap(x, "b")
        want = [own.permute(0, 2, 3, 1), rgb.permute(0, 2, 3, 1), mask.permute(0, 2, 3, 1)]
        got = ort.InferenceSession(str(exported / "ab.onnx"), providers=["CPUExecutionProvider"]).run(None, {INPUT: ours})
        err_onnx = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
        # .dfm: the DFL crop in BGR, against the same graph run by PyTorch.
        graph = ContractGraph(ae, "b", "a", 64, "dfl", 0.75).eval()
        want = graph(torch.from_numpy(dfl))
        got = ort.InferenceSession(str(exported / "ab.dfm"), providers=["CPUExecutionProvider"]).run(None, {INPUT: dfl})
        err_dfm = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want))
    print(f"\nmax |onnxruntime - pytorch| on 4 real faces: .onnx {err_onnx:.2e}, .dfm {err_dfm:.2e}")
    assert err_onnx < 1e-3 and err_dfm < 1e-3
    # The swap is not the input: the model changed the face.
    assert float(np.abs(got[1] - dfl).mean()) > 0.02


def test_the_dfm_swaps_a_real_face_as_pytorch_does_in_our_crop(exported, model_dir, analyzer, b_frames):
    """The .dfm on a DFL crop against the autoencoder on our crop of the same face (the crop swap and live
    feed it), mapped into that DFL crop: they differ by resampling only, not by a shift of the face."""
    from deepfake.faces.align import align_matrix, warp_face
    from deepfake.model_dir import load_model_dir

    loaded = load_model_dir(model_dir)
    ae, r, coverage = loaded.autoencoder.eval(), loaded.config.model.resolution, loaded.config.coverage
    sess = ort.InferenceSession(str(exported / "ab.dfm"), providers=["CPUExecutionProvider"])
    d = sess.get_inputs()[0].shape[1]
    to_dfl = np.vstack([ours_to_dfl(r, d, coverage), [0, 0, 1]])
    errs = []
    for bgr in b_frames[:4]:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        to_ours = align_matrix(analyzer.analyze(rgb)[0].landmarks, r, coverage)
        with torch.no_grad():
            x = torch.from_numpy(warp_face(rgb, to_ours, r)).permute(2, 0, 1)[None].float() / 255
            want, _ = ae.swap(x, "a")  # (1, 3, R, R) RGB
        want = cv2.warpAffine(np.ascontiguousarray(want[0].permute(1, 2, 0).numpy()[..., ::-1]), to_dfl[:2], (d, d),
                              flags=cv2.INTER_LINEAR)  # (D, D, 3) BGR in the DFL crop
        crop = cv2.warpAffine(bgr, (to_dfl @ np.vstack([to_ours, [0, 0, 1]]))[:2], (d, d), flags=cv2.INTER_AREA,
                              borderMode=cv2.BORDER_REPLICATE)  # the same face, cut into the DFL crop
        _, got, mask = sess.run(None, {INPUT: (crop[None] / 255).astype(np.float32)})
        inside = mask[0, ..., 0] > 0.5
        errs.append(float(np.abs(got[0] - want)[inside].mean() * 255))
    print(f"\nmean |.dfm - pytorch| inside the mask on 4 real faces: {np.round(errs, 2)} /255")
    assert max(errs) < 0.5, errs  # half a model pixel of shift gives 3-4 /255


def test_fp16_halves_the_file_and_stays_close(exported, model_dir, analyzer, b_frames, tmp_path):
    summary = export_model(model_dir, tmp_path / "ab16.dfm", ExportConfig(fp16=True))
    assert summary.megabytes < 0.6 * (exported / "ab.dfm").stat().st_size / 2**20
    _, dfl = _real_faces(analyzer, b_frames)
    full = ort.InferenceSession(str(exported / "ab.dfm"), providers=["CPUExecutionProvider"]).run(None, {INPUT: dfl})
    half = ort.InferenceSession(str(tmp_path / "ab16.dfm"), providers=["CPUExecutionProvider"]).run(None, {INPUT: dfl})
    assert half[1].dtype == np.float32
    assert max(float(np.abs(a - b).max()) for a, b in zip(full, half)) < 0.02


def test_direction_picks_the_decoder(exported, model_dir, analyzer, b_frames, tmp_path):
    """b2a swaps with B's decoder: on B's own faces it reconstructs her, so it stays closer to the input
    than the a2b swap does, and the file says which direction it is."""
    export_model(model_dir, tmp_path / "ba.onnx", ExportConfig(direction="b2a"))
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "ba.onnx")).metadata_props}
    assert meta["direction"] == "b2a"
    ours, _ = _real_faces(analyzer, b_frames)
    run = lambda name: ort.InferenceSession(str(name), providers=["CPUExecutionProvider"]).run(None, {INPUT: ours})[1]  # noqa: E731
    err_ab = float(np.abs(run(exported / "ab.onnx") - ours).mean())
    err_ba = float(np.abs(run(tmp_path / "ba.onnx") - ours).mean())
    assert err_ba < err_ab, (err_ba, err_ab)


def test_bad_exports_fail_in_one_line(model_dir, tmp_path, capsys):
    cases = [
        (["-m", str(model_dir), "-o", str(tmp_path / "x.pb")], "unknown export format"),
        (["-m", str(tmp_path), "-o", str(tmp_path / "x.dfm")], "config.json: missing"),
        (["-m", str(model_dir), "-o", str(tmp_path / "x.dfm"), "--checkpoint", "7"], "no checkpoint at step 7"),
        (["-m", str(model_dir), "-o", str(tmp_path / "x.dfm"), "--dfm-size", "100"], "multiple of the model's resolution 64"),
    ]
    for args, reason in cases:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("*.dfm")) and not list(tmp_path.glob(".*"))


def test_an_export_checks_its_output_first_and_leaves_nothing_behind(tmp_path, capsys):
    """A folder as the output, or --dfm-size for a .onnx, is refused before the model is read; an export
    that fails removes the folders it made for its output."""
    (tmp_path / "isdir.dfm").mkdir()
    missing = str(tmp_path / "no-model")
    cases = [
        ([str(tmp_path / "isdir.dfm")], "isdir.dfm: is a folder"),
        ([str(tmp_path / "x.onnx"), "--dfm-size", "256"], "--dfm-size 256 is for a .dfm"),
        ([str(tmp_path / "new" / "a" / "y.dfm")], "no-model"),
    ]
    for args, reason in cases:
        assert main(["export", "-m", missing, "-o", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert reason in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["isdir.dfm"]
    assert not list((tmp_path / "isdir.dfm").iterdir())


# ----------------------------------------------------------------------------------------------------
# The peers' contracts, reimplemented from their code: DeepFaceLive's DFMModel loader and FaceFusion's
# deep_swapper (warp_face_by_face_landmark_5 with dfl_whole_face, prepare_crop_frame, the three outputs,
# prepare_crop_mask, paste_back).


def _deepfacelive_load(path):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    assert len(inputs) == 1 and "in_face" in inputs[0].name  # its rule for a valid model
    height, width = inputs[0].shape[1:3]
    return sess, (width, height)


def _deepfacelive_convert(sess, size, face_bgr_uint8):
    """DFMModel.convert: resize to the model's input, uint8 -> float 0..1, run, resize the three back."""
    h, w = face_bgr_uint8.shape[:2]
    img = cv2.resize(face_bgr_uint8, size).astype(np.float32)[None] / 255.0
    out_face_mask, out_celeb, out_celeb_mask = sess.run(None, {"in_face:0": img})
    back = lambda x: cv2.resize(x[0], (w, h))  # noqa: E731
    return back(out_celeb), back(out_celeb_mask), back(out_face_mask)


def _facefusion_box_mask(size, blur=0.3):
    blur_amount = int(size * 0.5 * blur)
    blur_area = max(blur_amount // 2, 1)
    box = np.ones((size, size), np.float32)
    box[:blur_area, :] = box[-blur_area:, :] = 0
    box[:, :blur_area] = box[:, -blur_area:] = 0
    return cv2.GaussianBlur(box, (0, 0), blur_amount * 0.25) if blur_amount > 0 else box


def _facefusion_swap(sess, frame_bgr, landmarks68):
    r = next(i.shape[1] for i in sess.get_inputs() if i.name == "in_face:0")
    five = five_points(landmarks68).astype(np.float32)
    affine = cv2.estimateAffinePartial2D(five, DFL_WHOLE_FACE * r, method=cv2.RANSAC, ransacReprojThreshold=100)[0]
    crop = cv2.warpAffine(frame_bgr, affine, (r, r), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_AREA)
    x = cv2.addWeighted(crop, 1.75, cv2.GaussianBlur(crop, (0, 0), 2), -0.75, 0) / 255.0
    target_mask, face, source_mask = sess.run(None, {"in_face:0": x[None].astype(np.float32)})
    face = (face[0] * 255.0).clip(0, 255).astype(np.uint8)
    mask = np.minimum(source_mask[0], target_mask[0]).reshape(r, r).clip(0, 1)
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)), iterations=2)
    mask = cv2.GaussianBlur(mask, (0, 0), 6.25)
    mask = np.minimum(mask, _facefusion_box_mask(r)).clip(0, 1)
    inverse = cv2.invertAffineTransform(affine)
    size = frame_bgr.shape[:2][::-1]
    inv_mask = cv2.warpAffine(mask, inverse, size).clip(0, 1)[..., None]
    inv_face = cv2.warpAffine(face, inverse, size, borderMode=cv2.BORDER_REPLICATE)
    return (inv_mask * inv_face + (1 - inv_mask) * frame_bgr).astype(np.uint8), inv_mask[..., 0]


def test_deepfacelive_loads_it_and_facefusion_swaps_in_a_identity(exported, model_dir, analyzer, b_frames, tmp_path):
    from deepfake.model_dir import read_identities

    sess, size = _deepfacelive_load(exported / "ab.dfm")
    assert size == (256, 256)
    # DeepFaceLive hands any face size to convert(): a 224 px face comes back at 224 px, in range.
    celeb, celeb_mask, face_mask = _deepfacelive_convert(sess, size, np.full((224, 224, 3), 128, np.uint8))
    assert celeb.shape == (224, 224, 3) and celeb_mask.shape == face_mask.shape == (224, 224)

    ids = read_identities(model_dir)
    closer, changed, rows = 0, [], []
    for bgr in b_frames:
        face = analyzer.analyze(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))[0]
        out, alpha = _facefusion_swap(sess, bgr, face.landmarks)
        swapped = analyzer.analyze(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
        assert swapped, "no face found in the swapped frame"
        emb = swapped[0].embedding
        da, db = float(np.linalg.norm(emb - ids["a"])), float(np.linalg.norm(emb - ids["b"]))
        rows.append((da, db))
        closer += da < db
        # Only the face was pasted: pixels outside the pasted mask are the frame's own.
        outside = alpha == 0
        assert np.array_equal(out[outside], bgr[outside])
        changed.append(float(np.abs(out.astype(float) - bgr)[alpha > 0.5].mean()))
    print("\nFaceFusion-style swaps of held-out B frames, distance to A / B:",
          ", ".join(f"{a:.3f}/{b:.3f}" for a, b in rows))
    assert closer / len(b_frames) >= 0.9, rows
    assert min(changed) > 5
