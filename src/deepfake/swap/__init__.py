"""Swap: put the trained face into images and video.

Pure pieces: color.py (colour matching), blend_mask.py (blend masks), blend.py (feather / Poisson), paste.py
(inverse-affine paste-back), preview.py (before/after sheets). pipeline.py runs them per frame around the
model, batched and overlapped; run.py is `deepfake swap` as a library call (inputs, outputs, labels, errors),
after the fail-fast checks of checks.py.
"""
