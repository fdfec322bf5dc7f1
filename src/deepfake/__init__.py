"""deepfake: extract -> train -> swap -> evaluate. Every output is labelled synthetic."""

__version__ = "0.1.0"
