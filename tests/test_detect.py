"""detect: a discriminator trained briefly on real faces vs a trivially bad generator (blurred faces)
separates held-out real frames from blurred ones, through the whole detect pipeline (find, align, score)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch

from conftest import media_path
from deepfake.config import DetectConfig, DiscriminatorConfig
from deepfake.provenance.inspect import Detector, detect_files, format_reports
from deepfake.evaluate.metrics import accuracy, roc_auc
from deepfake.evaluate.runner import as_faceset

RES = 64


def _faces(faceset) -> np.ndarray:
    fs = as_faceset(faceset)
    out = []
    for rec in fs.records:
        bgr = cv2.imread(str(fs.root / rec.file), cv2.IMREAD_COLOR)
        out.append(cv2.resize(bgr[..., ::-1], (RES, RES), interpolation=cv2.INTER_AREA))
    return np.stack(out)  # (N, R, R, 3) uint8


def _blur(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'generator': each face blurred with a random Gaussian, as an under-trained autoencoder's output."""
    return np.stack([cv2.GaussianBlur(f, (0, 0), float(rng.uniform(0.8, 2.5))) for f in faces])


def _train_discriminator(real: np.ndarray, steps: int = 80, seed: int = 0) -> torch.nn.Module:
    from deepfake.models import build_discriminator

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    disc = build_discriminator(DiscriminatorConfig(kind="patch", depth=3, channels=16), RES)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for _ in range(steps):
        idx = rng.integers(0, len(real), 16)
        r = torch.from_numpy(real[idx]).permute(0, 3, 1, 2).float() / 255  # (16, 3, R, R)
        f = torch.from_numpy(_blur(real[idx], rng)).permute(0, 3, 1, 2).float() / 255
        if rng.random() < 0.5:  # flips, so the detector keys on sharpness, not on one face's layout
            r, f = r.flip(3), f.flip(3)
        lr, lf = disc(r), disc(f)  # (16, 1, h, w) patch logits
        loss = torch.nn.functional.softplus(-lr).mean() + torch.nn.functional.softplus(lf).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return disc.eval()


def _frames(name: str, indices: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media_path(name)))
    out, index = [], 0
    while len(out) < len(indices):
        ok, bgr = cap.read()
        assert ok
        if index in indices:
            out.append(bgr[..., ::-1].copy())
        index += 1
    cap.release()
    return out


def test_detect_separates_real_from_blurred_faces(faceset_a, faceset_b, tmp_path):
    real = np.concatenate([_faces(faceset_a), _faces(faceset_b)])
    disc = _train_discriminator(real)
    fs = as_faceset(faceset_a)
    detector = Detector(disc, RES, fs.size, fs.coverage, DetectConfig(), "cpu")

    # Held out: frames far from the ones the facesets were extracted from, saved as files.
    frames = _frames("d6.mp4", [400, 520, 640, 760, 880]) + _frames("d14.mp4", [250, 330, 410, 490])
    paths, labels = [], []
    for i, rgb in enumerate(frames):
        for label, img in ((1, rgb), (0, cv2.GaussianBlur(rgb, (0, 0), 4.0))):
            p = tmp_path / f"{'real' if label else 'blurred'}_{i}.png"
            cv2.imwrite(str(p), img[..., ::-1])
            paths.append(p)
            labels.append(label)
    reports = detect_files(paths, detector, progress=False)
    assert all(len(r.faces) == 1 and r.error is None for r in reports), format_reports(reports, 0.5)
    scores = np.array([r.mean_p_real for r in reports])
    auc, acc = roc_auc(scores, labels), accuracy(scores, labels)
    print(f"\ndetect on held-out frames, real vs blurred: ROC-AUC {auc:.3f}, accuracy {acc:.3f} "
          f"({sum(labels)} real, {len(labels) - sum(labels)} blurred)")
    assert auc > 0.9
    assert all(r.provenance is None for r in reports)  # plain PNGs carry no tag

    # Another generator, whose artefact is noise instead of blur: the same detector does not transfer.
    # It learned "blurry = fake", so noisy faces look sharper than real ones and rank as *more* real.
    rng = np.random.default_rng(0)
    crops = np.stack([detector.analyzer().analyze(rgb)[0].aligned for rgb in frames])
    noisy = np.clip(crops + rng.normal(0, 12, crops.shape), 0, 255).astype(np.uint8)
    p = np.r_[detector.score_aligned(crops), detector.score_aligned(noisy)]
    auc_other = roc_auc(p, np.r_[np.ones(len(crops)), np.zeros(len(noisy))])
    print(f"the same detector on another generator (noisy faces): ROC-AUC {auc_other:.3f}")
    assert auc_other < 0.6


def test_detect_reports_provenance_and_bad_files(tmp_path):
    from deepfake.models import build_discriminator
    from deepfake.provenance.label import make_record, save_labelled_image

    rgb = _frames("d6.mp4", [100])[0]
    tagged = tmp_path / "tagged.jpg"
    save_labelled_image(tagged, rgb, make_record(model="some-model"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    disc = build_discriminator(DiscriminatorConfig(kind="patch", depth=3, channels=8), RES)
    detector = Detector(disc, RES, 128, 0.75, DetectConfig(), "cpu")
    folder = tmp_path / "folder"
    folder.mkdir()
    cv2.imwrite(str(folder / "plain.png"), rgb[..., ::-1])
    (folder / "notes.txt").write_text("not media: ignored in a folder")
    reports = detect_files([tagged, broken, tmp_path / "missing.png", folder], detector, progress=False)
    assert len(reports) == 4 and reports[3].path.endswith("plain.png") and not reports[3].tagged
    assert reports[0].tagged and reports[0].provenance["model"] == "some-model" and len(reports[0].faces) == 1
    assert reports[1].error and "broken.png" in reports[1].error
    assert reports[2].error and "not found" in reports[2].error
    text = format_reports(reports, 0.5)
    assert "provenance tag: yes" in text and "skipped" in text
    assert reports[0].overall == "synthetic" and reports[0].labelled_by == ["provenance tag"]
    json.dumps([r.to_dict() for r in reports])  # machine-readable


def test_an_unreadable_file_is_one_line(tmp_path, capsys, caplog):
    from deepfake.cli import main as cli_main

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.mp4"
    assert cli_main(["detect", str(broken), str(missing)]) == 2  # nothing could be read
    out, err = capsys.readouterr()
    said = out.splitlines() + err.splitlines() + caplog.text.splitlines()
    assert [line for line in said if "broken.png" in line] == [
        f"{broken}: skipped (not an image (unrecognised format))"]
    assert [line for line in said if "missing.mp4" in line] == [f"{missing}: skipped (file not found)"]


def test_detect_without_a_model_reads_only_provenance_tags(tmp_path, capsys):
    from deepfake.cli import main as cli_main
    from deepfake.provenance.label import make_record, save_labelled_image

    rgb = _frames("d6.mp4", [100])[0]
    tagged, plain = tmp_path / "tagged.png", tmp_path / "plain.png"
    save_labelled_image(tagged, rgb, make_record(model="m"))
    cv2.imwrite(str(plain), rgb[..., ::-1])
    reports = detect_files([tagged, plain, tmp_path / "missing.jpg"], None, progress=False)
    assert [r.tagged for r in reports[:2]] == [True, False] and reports[2].error
    assert all(r.verdict == "not scored" and not r.faces for r in reports[:2])
    assert cli_main(["detect", str(tagged), str(plain)]) == 0
    out = capsys.readouterr().out
    assert f"{tagged}: synthetic (labelled by its provenance tag)" in out
    assert f"{plain}: no synthetic label found" in out
    assert "  provenance tag: none" in out


def test_detect_checks_the_signer_against_the_anchors_it_is_given(tmp_path, monkeypatch, capsys):
    from test_provenance import _sign_still

    from deepfake.cli import main
    from deepfake.provenance import signing

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    out = _sign_still(tmp_path / "out.jpg", media_path("d9.jpg"))
    assert main(["detect", str(out)]) == 0
    assert "trust not checked (no trust anchors given)" in capsys.readouterr().out
    root = tmp_path / "config" / "deepfake" / signing.LOCAL_ROOT
    assert main(["detect", str(out), "--trust-anchors", str(root), "--json"]) == 0
    credentials = json.loads(capsys.readouterr().out)["files"][0]["credentials"]
    assert credentials["trusted"] is True and credentials["trust"] == "trusted signer"
    assert main(["detect", str(out), "--trust-anchors", str(tmp_path / "none.pem")]) == 2
    err = capsys.readouterr().err.strip()
    assert "none.pem: trust anchors not found" in err and "\n" not in err
