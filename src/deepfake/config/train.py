"""The training run's config: the networks, losses, augmentation, data and the loop. Saved as the model
folder's config.json, so the folder alone rebuilds the model (model_dir.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from deepfake.config.choices import (ARCHS, COMPILE_MODES, DEVICE_HELP, DISCRIMINATOR_KINDS, PRESET_NAMES, RESETS,
                                     VAL_SPLITS)
from deepfake.config.options import DEVICE_PATTERN, option


# ----------------------------------------------------------------------------------------------------
# Models.


@dataclass
class ModelConfig:
    arch: str = option("df", "autoencoder architecture", choices=ARCHS)
    resolution: int = 64  # 64..512, multiple of 16
    encoder_stages: int = 4  # strided 5x5 convolutions
    encoder_channels: list[int] = field(default_factory=lambda: [128, 256, 512, 1024])  # per stage
    latent_dims: int = 1024
    bottleneck_res: int = 0  # grid the dense layer projects back to; 0 = resolution / 2^(decoder_stages+1)
    bottleneck_channels: int = 512
    decoder_stages: int = 3
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64])  # per stage
    activation: str = "leaky_relu"  # relu | leaky_relu | elu | gelu | silu | mish
    norm: str = "none"  # none | batch | instance | group
    residual_blocks: bool = False
    learned_mask: bool = True
    checkpoint_decoder: bool = False  # activation checkpointing in the decoder (saves memory)


@dataclass
class DiscriminatorConfig:
    kind: str = "patch"  # patch | unet
    depth: int = 3  # strided conv stages
    channels: int = 64  # width of the first stage (doubles per stage)
    activation: str = "leaky_relu"
    norm: str = "none"  # none | batch | instance | group (never on the first layer)


# ----------------------------------------------------------------------------------------------------
# Losses, augmentation, training.


@dataclass
class LossConfig:
    dssim_weight: float = 10.0
    l1_weight: float = 0.0
    mse_weight: float = 10.0
    mask_weight: float = 1.0  # loss on the learned mask channel
    eye_mouth_weight: float = 3.0  # extra weight inside eye and mouth regions (1 = none)
    gan_weight: float = option(0.0, "adversarial loss weight; 0 = plain autoencoder (the baseline)", lo=0, hi=100)
    gan_loss: str = "nonsaturating"  # nonsaturating | hinge
    r1_gamma: float = 0.0  # R1 gradient penalty on D (0 = off)
    r1_every: int = 16  # lazy R1 (StyleGAN2): penalise every N D steps, scaled by N
    gan_start_step: int = 0  # DFL orders GAN after the warp phase: G gets the adversarial term from here on
    eye_mouth_l1: float = 0.0  # DFL's eye and mouth priority: an L1 term on those regions alone (DFL: 300)
    identity_weight: float = 0.0  # pull each swap's dlib embedding to its decoder identity's mean (0 = off)
    true_face_weight: float = 0.0  # DF only: a latent-code discriminator makes B's codes pass as A's (DFL)


@dataclass
class AugmentConfig:
    warp: bool = True
    warp_strength: float = 0.05  # std of the random grid offsets, in normalised units
    warp_grid: int = 5
    rotation: float = 10.0  # degrees
    scale: float = 0.05  # zoom factor drawn from 1 +/- scale
    shift: float = 0.05  # fraction of the image side, either way, in x and y
    flip: bool = True
    brightness: float = 0.1  # factor drawn from 1 +/- brightness; contrast and saturation alike
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.02  # fraction of a full turn around the colour wheel, either way
    warp_until_step: int = 0  # DFL's "warp first, then no warp": 0 = warp always
    affine_until_step: int = 0  # the same switch for rotation/scale/shift/flip/colour: 0 = always


@dataclass
class DataConfig:
    uniform_yaw: bool = False  # batches balanced over head yaw (the manifest's pose): profiles are not starved
    yaw_bins: int = 7  # equal-width bins over the training faces' yaw range
    mining_every: int = 0  # hard-sample mining: every N steps, one more step on the highest-loss faces (0 = off)
    mining_pool: int = 4  # a mined batch is the hardest 1/pool of pool x batch freshly drawn faces
    mask: str = "hull"  # the masks the losses use: hull (extract's) | segmenter (written by `deepfake mask apply`)
    # Pretraining (`deepfake pretrain`): the facesets, of any number of people, that both sides draw from.
    # Empty for a model of a pair.
    pool: list[str] = field(default_factory=list)


@dataclass
class StartConfig:
    """Where a model's weights began (`deepfake train --from`): random, or another model folder's."""

    source: str = ""  # the model folder the weights were taken from; "" = random initialisation
    source_config_hash: str = ""  # sha256 of the source's config (train/reuse.py config_hash)
    source_step: int = 0  # the source's step whose weights were taken
    reset: str = ""  # what was re-initialised: inter | decoders | none (train/reuse.py RESET_MODULES)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    start: StartConfig = field(default_factory=StartConfig)
    preset: str = "original64"
    steps: int = option(10000, "train until this step (unless --minutes is given alone)", lo=0)
    # Faces per identity per step (global, over all GPUs); the command line also takes auto and auto:N.
    batch: int = option(16, "faces per identity per step", lo=1, hi=4096)
    lr: float = option(5e-5, "generator learning rate", above=0, hi=1)
    d_lr: float = option(1e-4, "discriminator learning rate", above=0, hi=1, ui=False)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off
    lr_dropout: float = 0.0  # DFL's learning-rate dropout: the fraction of weights left unchanged by each update
    grad_accum: int = option(1, "micro-batches per optimizer step", lo=1, ui=False)
    # One batched pass through the shared encoder (and the discriminator) for both identities' faces
    # instead of one pass per identity: the same arithmetic in half the kernels, each twice as large.
    # Networks with batch norm always get one pass per identity (its statistics are per batch). Off
    # saves a little memory with a U-Net discriminator (liae256 b16 GAN bf16: 7.09 GiB against 7.21).
    batch_sides: bool = True
    seed: int = option(0, "random seed (weights, batches, the validation split)", lo=0)
    val_fraction: float = option(0.05, "faces held out per identity", lo=0, hi=0.9, ui=False)
    val_split: str = option("random", "which faces are held out: random, or tail (each faceset's last faces in frame "
                            "order: for a faceset from one video, the end of the clip, so validation never sees "
                            "neighbours of training frames: what shows over-training)", choices=VAL_SPLITS)
    val_every: int = option(100, "validation every N steps (0 = none)", lo=0)
    save_every: int = option(500, "checkpoint every N steps", lo=1)
    preview_every: int = option(500, "preview grid every N steps (0 = none)", lo=0)
    keep_backups: int = 3
    keep_every: int = option(0, "also keep the weights every N steps in MODEL_DIR/timeline (for evaluate --timeline)", lo=0)
    log_every: int = option(10, "a metrics row (the loss sums read from the device) every N steps", lo=1, ui=False)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    channels_last: bool = True
    compile: bool = option(False, "torch.compile G's and D's forward and losses (one graph each)", ui=False)
    compile_mode: str = option("auto", "torch.compile mode; reduce-overhead replays CUDA graphs (pays for small, fast "
                               "models); auto picks it on CUDA up to 128 px", choices=COMPILE_MODES, ui=False)
    val_faces: int = option(64, "held-out faces scored per identity, at most", lo=1, ui=False)
    preview_faces: int = option(6, "columns of the preview grid, at most", lo=1, ui=False)
    overfit_patience: int = 3  # validations in a row with val up and train down before warning
    tensorboard: bool = True  # log to MODEL_DIR/tensorboard when the `tensorboard` package is installed
    # Filled in from the facesets at train time, so swap aligns faces the same way.
    face_size: int = 0
    coverage: float = 0.0
    # The hull region of the training masks (full | whole), and swap's default --mask-region. "" = faceset
    # A's, filled in at train time; a faceset with hulls of another region has them redrawn from its
    # landmarks. With data.mask=segmenter the applied masks are used as written: the region is swap's only.
    mask_region: str = ""


@dataclass
class RunBudget:
    """The wall-clock budget every training command takes (train, pretrain, mask train)."""

    minutes: float | None = option(None, "wall-clock budget for this run: stop and save when it is spent. Alone "
                                   "it is the only limit; with --steps the first reached stops", above=0, hi=100_000)


@dataclass
class TrainRun(RunBudget):
    """What one `deepfake train` run takes besides its TrainConfig; not saved in the model folder."""

    preset: str | None = option(None, "the starting config (default: the folder's own config when resuming, "
                                "else original64)", choices=PRESET_NAMES)
    start_from: str | None = option(None, "start from this model's weights (a `deepfake pretrain` model, or one of "
                                    "another pair with the same network); the step counter starts at 0. Without "
                                    "--preset/--config the source's preset and network are used",
                                    flag="from", metavar="MODEL_DIR", ui=False)
    # "" = not given (inter with --from); a str, not `str | None`, so that the choice "none" stays a word.
    reset: str = option("", "with --from, what is re-initialised: inter (the bottleneck; the default), "
                        "decoders, or none (A<->B reused for A<->C)", choices=RESETS)


@dataclass
class PretrainRun(RunBudget):
    """What one `deepfake pretrain` run takes besides its TrainConfig; not saved in the model folder."""

    preset: str | None = option(None, "the network the pairs trained from it will use (default: the folder's own "
                                "config when resuming, else original64)", choices=PRESET_NAMES)


@dataclass
class DiscriminatorRun:
    """`deepfake discriminator`: D trained alone on a trained model's real faces and its swaps."""

    steps: int = option(500, "training steps", lo=1)
    batch: int = option(16, "real faces per step (plus as many fakes)", lo=1, hi=4096)
    lr: float = option(2e-4, "Adam learning rate", above=0, hi=1)
    kind: str | None = option(None, "the discriminator (default: the model's own setting)", choices=DISCRIMINATOR_KINDS)
    val_fraction: float = option(0.2, "faces held out per identity for the scores", above=0, hi=0.9)
    device: str = option("auto", DEVICE_HELP, pattern=DEVICE_PATTERN)
    seed: int = option(0, "batch order and initialisation (the split follows the model's own seed)", lo=0)
