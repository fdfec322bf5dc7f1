"""Polygon labels (labels.json): round trips, rasterising, clean one-line errors; the hull's region."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepfake.errors import DeepfakeError
from deepfake.faces.align import CANONICAL_68
from deepfake.faces.hull import hull_mask
from deepfake.faceset import FaceRecord, new_header, read_faceset, write_manifest
from deepfake.segment.labelme import import_labelme
from deepfake.segment.labels import LABELS, FaceLabel, read_labels, rasterise, write_labels

SIZE = 128


def _landmarks(size: int = SIZE) -> np.ndarray:
    return (0.5 + 0.75 * (CANONICAL_68 + [0, 0.1])) * size  # (68, 2) a frontal face in the crop


def _faceset(root, n: int = 3):
    """A manifest of n faces (no images: labels only need the records)."""
    lm = _landmarks().tolist()
    recs = [FaceRecord(file=f"faces/{i:06d}.png", mask=f"masks/{i:06d}.png", source="clip.mp4", source_id="x",
                       frame=i, time=i / 30, face_index=0, bbox=[0, 0, 1, 1], landmarks=lm, aligned_landmarks=lm,
                       matrix=[[1, 0, 0], [0, 1, 0]], size=SIZE, score=1.0, blur=100.0,
                       pose={"yaw": 10.0 * i, "pitch": 0.0, "roll": 0.0}, embedding=[0.0] * 128) for i in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    write_manifest(root, new_header({"size": SIZE, "coverage": 0.75}), recs)
    return read_faceset(root)


def test_labels_round_trip_and_rasterise(tmp_path):
    fs = _faceset(tmp_path / "fs")
    square = np.array([[32.0, 32.0], [96.0, 32.0], [96.0, 96.0], [32.0, 96.0]])
    hole = np.array([[48.0, 48.0], [64.0, 48.0], [64.0, 64.0], [48.0, 64.0]])
    hand = np.array([[60.5, 70.25], [90.0, 70.0], [90.0, 120.0], [60.0, 120.0]])
    path = write_labels(fs, {"faces/000000.png": FaceLabel(include=[square], exclude=[hole]),
                             "faces/000001.png": FaceLabel(exclude=[hand]),
                             "faces/000002.png": FaceLabel()})  # no polygons: left out
    assert path == fs.root / LABELS
    back = read_labels(fs)
    assert set(back) == {"faces/000000.png", "faces/000001.png"}
    np.testing.assert_allclose(back["faces/000000.png"].include[0], square)
    np.testing.assert_allclose(back["faces/000000.png"].exclude[0], hole)
    np.testing.assert_allclose(back["faces/000001.png"].exclude[0], hand, atol=1e-3)

    target = rasterise(back["faces/000000.png"], SIZE, SIZE)
    assert target.dtype == np.uint8 and target.shape == (SIZE, SIZE) and set(np.unique(target)) <= {0, 255}
    assert target[40, 40] == 255 and target[56, 56] == 0 and target[10, 10] == 0
    assert abs((target > 0).sum() - (65 * 65 - 15 * 15)) < 2 * 65 + 2 * 15  # within an edge row of the area
    # At another resolution the polygons scale with it.
    half = rasterise(back["faces/000000.png"], SIZE, SIZE // 2)
    assert half[20, 20] == 255 and half[28, 28] == 0
    # Exclude polygons only: the hull is the include.
    hull = hull_mask(_landmarks(), SIZE)
    carved = rasterise(back["faces/000001.png"], SIZE, SIZE, hull)
    assert carved[64, 40] == 255 and carved[90, 75] == 0 and carved[5, 5] == 0
    assert ((carved > 0) <= (hull > 0)).all()


def _write(fs, data) -> None:
    (fs.root / LABELS).write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def _doc(faces) -> dict:
    return {"schema": "deepfake.mask_labels", "version": 1, "faces": faces}


TRI = [[10, 10], [50, 10], [30, 40]]


@pytest.mark.parametrize("data, words", [
    ('{"schema": "deepfake.mask_labels", "faces": {', ["not valid JSON", "line 1"]),
    ({"faces": {}}, ["not a deepfake mask labels file"]),
    (_doc({"faces/000009.png": {"include": [TRI]}}), ["faces/000009.png", "not in the faceset"]),
    (_doc({"faces/000001.png": {"include": [[[10, 10], [140, 10], [30, 40]]]}}),
     ["faces/000001.png", "include polygon 1", "(140, 10)", "outside the 128 px face"]),
    (_doc({"faces/000001.png": {"exclude": [TRI, [[-1, 5], [20, 5], [9, 30]]]}}),
     ["faces/000001.png", "exclude polygon 2", "outside"]),
    (_doc({"faces/000000.png": {"include": [[[1, 1], [2, 2]]]}}), ["faces/000000.png", "at least 3 points"]),
    (_doc({"faces/000000.png": {"include": [[[1, 1], ["a", 2], [3, 9]]]}}), ["faces/000000.png", "not [x, y] numbers"]),
    (_doc({"faces/000000.png": {"include": [[[1, 1], [2, 2], [3, 3]]]}}), ["faces/000000.png", "no area"]),
    (_doc({"faces/000000.png": {"inclde": [TRI]}}), ["faces/000000.png", "include", "exclude"]),
])
def test_bad_label_files_give_one_line_errors(tmp_path, data, words):
    fs = _faceset(tmp_path / "fs")
    _write(fs, data)
    with pytest.raises(DeepfakeError) as e:
        read_labels(fs)
    msg = str(e.value)
    assert "\n" not in msg and str(fs.root / LABELS) in msg
    for w in words:
        assert w in msg, msg


def test_write_refuses_what_it_could_not_read_back(tmp_path):
    fs = _faceset(tmp_path / "fs")
    with pytest.raises(DeepfakeError, match="outside the 128 px face"):
        write_labels(fs, {"faces/000000.png": FaceLabel(include=[np.array([[0, 0], [200, 0], [0, 50]])])})
    assert not (fs.root / LABELS).exists()


def test_labelme_import_scales_and_merges(tmp_path):
    fs = _faceset(tmp_path / "fs")
    write_labels(fs, {"faces/000002.png": FaceLabel(include=[np.array(TRI, float)])})
    queue = tmp_path / "queue"
    queue.mkdir()
    shapes = [{"label": "include", "points": [[20, 20], [236, 20], [236, 236], [20, 236]], "shape_type": "polygon"},
              {"label": "Exclude", "points": [[100, 100], [150, 160]], "shape_type": "rectangle"}]
    (queue / "000001.json").write_text(json.dumps({"shapes": shapes, "imagePath": "000001.png",
                                                   "imageWidth": 256, "imageHeight": 256}), encoding="utf-8")
    count, _ = import_labelme(fs, queue)
    labels = read_labels(fs)
    assert count == 1 and set(labels) == {"faces/000001.png", "faces/000002.png"}  # merged, not replaced
    np.testing.assert_allclose(labels["faces/000001.png"].include[0][1], [118, 10])  # 256 px -> 128 px
    np.testing.assert_allclose(labels["faces/000001.png"].exclude[0], [[50, 50], [75, 50], [75, 80], [50, 80]])

    (queue / "000001.json").write_text(json.dumps({"shapes": [{"label": "hair", "points": TRI}]}), encoding="utf-8")
    with pytest.raises(DeepfakeError, match=r"000001.json: shape 1: label 'hair' is neither include nor exclude"):
        import_labelme(fs, queue)


def test_hull_region_full_stops_at_the_brows():
    lm = _landmarks()
    whole, full = hull_mask(lm, SIZE), hull_mask(lm, SIZE, "full")
    np.testing.assert_array_equal(whole, hull_mask(lm, SIZE, "whole"))  # the default is unchanged
    assert ((full > 0) <= (whole > 0)).all() and (full > 0).sum() < 0.9 * (whole > 0).sum()
    brow_top = lm[17:27, 1].min()
    forehead = (int(SIZE / 2), int(brow_top - 0.08 * SIZE))
    assert whole[forehead[1], forehead[0]] == 255 and full[forehead[1], forehead[0]] == 0
    assert full[int(lm[30, 1]), int(lm[30, 0])] == 255  # the nose tip is in both
    with pytest.raises(ValueError, match="unknown mask region 'head'"):
        hull_mask(lm, SIZE, "head")
