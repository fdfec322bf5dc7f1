"""The train stage: two facesets in, a model folder out (model_dir.py is its contract with swap).

    from deepfake.train import train
    result = train(preset_config("tiny"), "facesets/a", "facesets/b", "models/ab", minutes=5)

loop.py is the loop; step.py the G and D phases; build.py the one builder of nets, optimizers and step;
batches.py the data; loss_masks.py which masks the losses use; metrics.py what is logged; checkpoint*.py
resuming; signals.py Ctrl-C and SIGTERM; memory.py the memory estimate and the batch finder;
discriminator.py the discriminator trained alone.
"""

from deepfake.train.loop import STOP_REASONS, TrainResult, train

__all__ = ["STOP_REASONS", "TrainResult", "train"]
