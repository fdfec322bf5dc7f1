"""Faces: detection, 68-point landmarks, alignment, masks, identity, pose, quality, smoothing.

`FaceAnalyzer` (analyzer.py) runs the whole chain on a frame; the other modules are its parts and
are usable on their own. Models load when an object is built, never at import.
"""
