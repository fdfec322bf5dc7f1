"""Fake detection, named apart from face detection: label.py the synthetic-media tag every output carries
(PNG/JPEG/WebP metadata, MP4 tags, the visible mark), inspect.py what `deepfake detect` reports about a
file (its tag, and a trained model's per-face verdicts)."""
