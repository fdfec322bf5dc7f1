"""The faceset: the contract between extract, train, swap and evaluate.

A faceset is a folder:

    FACESET/
      faces.jsonl          header line, then one JSON object per face (written atomically)
      faces/000000.png     aligned face, RGB, size x size
      masks/000000.png     face-hull mask, L, size x size, of the region in settings.mask_region
      masks_segmenter/     optional: a segmenter's masks, by `deepfake mask apply` (faceset/mask_files.py)

The header holds the schema version and the extraction settings. Every record ties an aligned face
back to its source frame and the transform that made it (`matrix`: source -> aligned, 2x3).
"""

from deepfake.faceset.manifest import (
    MANIFEST,
    SCHEMA,
    SCHEMA_VERSION,
    Faceset,
    FaceRecord,
    file_fingerprint,
    new_header,
    read_faceset,
    write_manifest,
)
from deepfake.faceset.split import SIDE_SEED_OFFSET, VAL_SPLITS, side_split, split_train_val

__all__ = ["MANIFEST", "SCHEMA", "SCHEMA_VERSION", "SIDE_SEED_OFFSET", "VAL_SPLITS", "FaceRecord", "Faceset",
           "file_fingerprint", "new_header", "read_faceset", "side_split", "split_train_val", "write_manifest"]
