from deepfake.train.loop import *  # noqa  (temporary during the split)
from deepfake.train.loop import _train  # noqa
