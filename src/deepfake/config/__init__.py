"""Typed configs for every stage, saved next to every output and checkpoint, one module per stage; each
option is declared once, on its field (options.py), and the command line and the dashboard are generated
from it. config_io.py reads and writes them (JSON, `--set KEY=VALUE`, sweep grids)."""

from deepfake.config.app import DemoConfig, UiConfig
from deepfake.config.evaluate import DetectConfig, EvaluateConfig, EvaluateRun, SweepConfig
from deepfake.config.export import ExportConfig
from deepfake.config.extract import CleanThresholds, ExtractConfig, FacesetInfoConfig
from deepfake.config.live import LiveConfig
from deepfake.config.segment import (MaskAugmentConfig, MaskLabelConfig, MaskTrainConfig, SegmentApplyConfig,
                                     SegmenterConfig, SegmentRun)
from deepfake.config.swap import SwapConfig
from deepfake.config.train import (AugmentConfig, DataConfig, DiscriminatorConfig, DiscriminatorRun, LossConfig,
                                   ModelConfig, PretrainRun, StartConfig, TrainConfig, TrainRun)

__all__ = ["AugmentConfig", "CleanThresholds", "DataConfig", "DemoConfig", "DetectConfig", "DiscriminatorConfig",
           "DiscriminatorRun", "EvaluateConfig", "EvaluateRun", "ExportConfig", "ExtractConfig", "FacesetInfoConfig",
           "LiveConfig", "LossConfig", "MaskAugmentConfig", "MaskLabelConfig", "MaskTrainConfig", "ModelConfig",
           "PretrainRun", "SegmentApplyConfig", "SegmentRun", "SegmenterConfig", "StartConfig", "SwapConfig",
           "SweepConfig", "TrainConfig", "TrainRun", "UiConfig"]
