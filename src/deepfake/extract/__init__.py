"""`extract`: images and videos -> a faceset folder (aligned faces, masks, manifest).

Work is split into tasks (inputs.py: one per image, a few contiguous segments per video) that worker
processes run end to end (workers.py: decode, detect, landmarks, smoothing, alignment, measures, PNG
encoding). This process only files the results: identity filter, de-duplication, a writer thread for
the images (writer.py), and the manifest, written atomically at the end and every CHECKPOINT_S seconds,
so an interrupted run keeps its work. Bad inputs are skipped with one line each and listed in the summary.
"""

from deepfake.extract.inputs import collect_inputs
from deepfake.extract.run import CONFIG_FILE, ExtractSummary, extract, reference_embedding

__all__ = ["CONFIG_FILE", "ExtractSummary", "collect_inputs", "extract", "reference_embedding"]
