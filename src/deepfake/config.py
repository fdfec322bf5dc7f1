"""Typed configs for every stage, saved next to every output and checkpoint. Each stage owns one
dataclass here; config_io.py reads and writes them (JSON, `--set KEY=VALUE`, sweep grids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


# ----------------------------------------------------------------------------------------------------
# Extract.


@dataclass
class ExtractConfig:
    size: int = 256  # aligned face size in px
    coverage: float = 0.75  # fraction of the aligned crop the canonical face spans (DFL "whole face" ~ 0.75)
    every: int = 1  # take every Nth video frame
    frames: int = 0  # video: read only the first N frames (0 = all)
    min_face: int = 40  # smallest face box side kept, px in the source frame
    max_faces: int = 0  # per frame, largest first; 0 = no limit
    detector: str = "hog"  # hog | cnn
    detect_max_side: int = 640  # frames are downscaled to this long side for detection
    upsample_when_empty: bool = True  # retry with tiles/upsampling when nothing is found at the coarse scale
    reference: list[str] = field(default_factory=list)  # identity filter: images of the person to keep
    reference_threshold: float = 0.6  # max embedding distance to the reference mean
    smooth: bool = True  # temporal landmark smoothing on video
    smooth_min_cutoff: float = 1.0  # One-Euro filter: cutoff (Hz) at rest
    smooth_beta: float = 5.0  # One-Euro filter: how fast the cutoff rises with speed (no lag on fast motion)
    image_format: str = "png"  # aligned faces: png (lossless) | jpg
    embed_every: int = 25  # video: refresh a tracked face's identity embedding every N frames (it costs ~80 ms)
    workers: int = 2  # processes for detection
    device: str = "auto"  # identity embeddings (dlib's ResNet in torch): auto | cpu | cuda | cuda:N
    mask_region: str = "whole"  # the hull mask: whole (with the forehead) | full (stops at the brows: fringes, hats)


# ----------------------------------------------------------------------------------------------------
# Models.


@dataclass
class ModelConfig:
    arch: str = "df"  # df | liae
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
    gan_weight: float = 0.0  # 0 = plain autoencoder (the baseline)
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


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "original64"
    steps: int = 10000
    batch: int = 16
    lr: float = 5e-5
    d_lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off
    lr_dropout: float = 0.0  # DFL's learning-rate dropout: the fraction of weights left unchanged by each update
    grad_accum: int = 1
    # One batched pass through the shared encoder (and the discriminator) for both identities' faces
    # instead of one pass per identity: the same arithmetic in half the kernels, each twice as large.
    # Networks with batch norm always get one pass per identity (its statistics are per batch). Off
    # saves a little memory with a U-Net discriminator (liae256 b16 GAN bf16: 7.09 GiB against 7.21).
    batch_sides: bool = True
    seed: int = 0
    val_fraction: float = 0.05
    val_split: str = "random"  # random | tail: hold out the end of each faceset (faceset.split_train_val)
    val_every: int = 100
    save_every: int = 500
    preview_every: int = 500
    keep_backups: int = 3
    keep_every: int = 0  # also keep the weights every N steps (MODEL_DIR/timeline/), for evaluate --timeline
    log_every: int = 10  # a metrics row (the loss sums read from the device) every N steps
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    channels_last: bool = True
    compile: bool = False  # torch.compile G's and D's forward-and-loss, one graph each (compile time is reported)
    compile_mode: str = "auto"  # auto (CUDA graphs for small models on CUDA) | default | reduce-overhead | max-autotune
    val_faces: int = 64  # per identity, at most: the fixed validation set
    preview_faces: int = 6  # columns of the preview grid
    overfit_patience: int = 3  # validations in a row with val up and train down before warning
    tensorboard: bool = True  # log to MODEL_DIR/tensorboard when the `tensorboard` package is installed
    # Filled in from the facesets at train time, so swap aligns faces the same way.
    face_size: int = 0
    coverage: float = 0.0
    # The hull region of the training masks (full | whole), and swap's default --mask-region. "" = faceset
    # A's, filled in at train time; a faceset with hulls of another region has them redrawn from its
    # landmarks. With data.mask=segmenter the applied masks are used as written: the region is swap's only.
    mask_region: str = ""


# ----------------------------------------------------------------------------------------------------
# Swap.


@dataclass
class SwapConfig:
    direction: str = "a2b"  # a2b: A's face onto B (the input shows B) | b2a
    mask: str = "learned*hull"  # learned, hull, segmenter or their intersection joined by * (segmenter*hull)
    mask_region: str = ""  # the hull: full | whole; "" = the model's (its config.json mask_region)
    mask_model: str = ""  # folder made by `deepfake mask train`: the segmenter of --mask segmenter
    erode: int = 0  # px (negative dilates)
    blur: int = 0  # px; 0 = automatic, proportional to the face size
    color: str = "rct"  # rct | lct | idt | hist | none
    blend: str = "feather"  # feather | poisson
    sharpen: float = 0.0  # unsharp-mask amount; 0 = off
    all_faces: bool = False
    identity_threshold: float = 0.6
    batch: int = 16
    crf: int = 18
    preset: str = "medium"
    watermark: bool = False
    invisible_mark: bool = True  # the invisible payload (tool marker + model hash) in every swapped face
    sign_cert: str = ""  # PEM chain (signing certificate first) for the Content Credentials; "" = the local chain
    sign_key: str = ""  # its PEM private key
    device: str = "auto"
    amp: str = "auto"  # model precision: auto (bf16 on a GPU that has it, else fp32) | bf16 | off
    frames: int = 0  # video: swap only the first N frames (0 = all); the output is cut to match
    preview: bool = False  # write a before/after preview instead of the full output (PNG sheet or short MP4)
    preview_frames: int = 4  # rows of the PNG sheet, spread evenly over the video
    preview_seconds: float = 3.0  # length of an MP4 preview
    checkpoint: str = "last"  # which weights of the model folder: last | best | a step number



# ----------------------------------------------------------------------------------------------------
# Evaluate, sweep, detect.


@dataclass
class EvaluateConfig:
    max_faces: int = 64  # held-out faces per side (the model's own validation split), 0 = all
    max_frames: int = 150  # with --frames: frames of the video used for the flicker measure
    verify_threshold: float = 0.6  # dlib's same-person distance
    batch: int = 16
    grid_faces: int = 6  # held-out faces shown per side in the swap grid
    detect_threshold: float = 0.5  # P(real) >= threshold counts as real
    device: str = "auto"
    distractors: list[str] = field(default_factory=list)  # facesets of other people: more identities for retrieval
    checkpoint: str = "last"  # which weights of the model folder: last | best | a step number



@dataclass
class SweepConfig:
    base: str = "tiny"  # preset name, or a JSON config file the variants start from
    steps: int = 200  # training budget per variant (ignored when minutes > 0)
    minutes: float = 0.0  # wall-clock budget per variant; 0 = use steps
    rank_by: str = "ssim"  # metric the results table is sorted by (see deepfake.sweep.run.RANK_METRICS)
    seed: int = 0  # same seed and data split for every variant
    device: str = "auto"
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


@dataclass
class DetectConfig:
    threshold: float = 0.5  # P(real) below this calls a face synthetic
    every: int = 5  # video: score every Nth frame
    max_frames: int = 200  # video: at most this many scored frames per file (0 = all)
    detector: str = "hog"  # hog | cnn
    batch: int = 32
    device: str = "auto"
    checkpoint: str = "last"  # which weights of the model folder: last | best | a step number


# ----------------------------------------------------------------------------------------------------
# Faceset clean.


@dataclass
class CleanThresholds:
    min_blur: float | None = None  # absolute: drop faces with a blur score below this
    blur_fraction: float | None = 0.4  # relative: drop faces below this fraction of the median blur score
    max_yaw: float | None = 60.0  # degrees (absolute value)
    max_pitch: float | None = 40.0
    max_roll: float | None = 45.0
    max_identity: float | None = 0.6  # embedding distance to the faceset's main identity (or the reference)


# ----------------------------------------------------------------------------------------------------
# The segmenter (`deepfake mask`): the network, its augmentation and its training run. Saved as the mask
# model folder's config.json, so the folder alone rebuilds the network.


@dataclass
class SegmenterConfig:
    resolution: int = 128  # faces are resized to this before the network and the masks back after
    base_channels: int = 8  # channels at full resolution; doubled at every level down
    max_channels: int = 64  # cap on the doubling, so depth costs little at the bottom
    depth: int = 4  # downsamplings: the bottom level sees resolution / 2**depth
    norm: str = "batch"  # none | batch | instance | group (batch folds into the convs at inference)
    activation: str = "leaky_relu"


@dataclass
class MaskAugmentConfig:
    """Probabilities are per face and step; sizes are fractions of the face crop."""

    rotation: float = 15.0  # degrees, either way
    scale: float = 0.10  # zoom, either way
    shift: float = 0.06  # fraction of the crop
    flip: bool = True
    background: float = 0.5  # paste another face's surroundings outside this face's hull
    occluders: float = 0.8  # give the face at least one occluder
    max_occluders: int = 3
    occluder_size: tuple[float, float] = (0.12, 0.55)  # smallest and largest occluder extent
    color: float = 0.2  # brightness, contrast and saturation jitter, either way
    blur: float = 0.25  # Gaussian blur
    blur_sigma: float = 2.0  # largest blur sigma, px at the segmenter's resolution
    jpeg: float = 0.25  # JPEG artefacts (DCT quantisation on the device, segment/jpeg.py)
    jpeg_quality: tuple[int, int] = (15, 75)


@dataclass
class MaskTrainConfig:
    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    augment: MaskAugmentConfig = field(default_factory=MaskAugmentConfig)
    region: str = "whole"  # the hull the pretraining targets: full (to the brows) | whole (with forehead)
    steps: int = 20000  # the run ends at this step (pretraining included)
    pretrain_steps: int = 4000  # steps on hull targets before the labels take over
    label_share: float = 0.5  # faces of a label-phase batch drawn from labelled faces (the rest: hulls)
    batch: int = 16
    lr: float = 1e-3  # Adam
    bce_weight: float = 1.0  # sigmoid cross-entropy: sharp per-pixel decisions
    dssim_weight: float = 1.0  # DSSIM of the probabilities: the mask's shape and edges, not just its area
    seed: int = 0
    device: str = "auto"
    val_fraction: float = 0.05  # faces held out per faceset, scored with a fixed augmentation
    val_faces: int = 32  # at most this many of them
    log_every: int = 50
    save_every: int = 500
    preview_every: int = 500
    keep_backups: int = 2


# ----------------------------------------------------------------------------------------------------
# Demo and the dashboard.


@dataclass
class DemoConfig:
    minutes: float = 4.0  # training budget (wall clock)
    frames: int = 120  # frames of each clip used (extraction and the swapped video)
    preset: str = "quick"  # training preset (models/presets.py)
    face_size: int = 128  # aligned face size for extraction (and so for swap)
    batch: int = 8
    device: str = "cpu"
    seed: int = 0


@dataclass
class UiConfig:
    workspace: Path
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None  # required (given or generated) for any host but loopback
    max_upload_bytes: int = 4 << 30
    job_env: dict[str, str] = field(default_factory=dict)  # extra environment for job processes
    stream_seconds: float = 30.0  # an event stream ends after this; EventSource reconnects by itself
    poll_s: float = 0.3  # job scheduler and event stream polling
