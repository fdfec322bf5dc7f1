"""Swap: put the trained face into images and video.

color.py (colour matching), masks.py (blend masks), blend.py (feather / Poisson), paste.py (inverse-affine
paste-back) are pure functions; pipeline.py runs them per frame around the model, batched and overlapped.
"""
