"""Fake detection, named apart from face detection: what marks an output as synthetic and made by this
tool, and reading those marks back.

label.py the synthetic-media tag every output carries (PNG/JPEG/WebP metadata, MP4 tags, the visible
mark); credentials.py the signed C2PA Content Credentials in every JPEG, PNG and MP4; watermark.py the
invisible mark in every swapped face, reading.py reading it from a file; inspect.py what `deepfake
detect` reports about a file (all of the above, and a trained model's per-face verdicts)."""
