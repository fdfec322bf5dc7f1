"""Input/output helpers: atomic writes, image and video reading and writing."""
