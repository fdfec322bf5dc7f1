#!/usr/bin/env bash
# One prepared GPU session: every check and timing that needs CUDA, in one call, most important first,
# each part under its own time limit so a slow compile cannot eat the others. Parts past the budget are
# skipped, and say so.
#
# On the lent device machine (its python3 already holds a CUDA torch, opencv, safetensors, tqdm,
# matplotlib, scipy and pytest; dlib and PyAV are not needed here), from the repository root:
#
#     ln -sfn ../shared/media .gpu_media         # here, once: a link, nothing is copied
#     device run, carry [".gpu_media/d6.mp4", ".gpu_media/d14.mp4"], timeout_s 600:
#         bash benchmarks/gpu_check.sh
#
# Everything goes to $OUT/gpu_check.log (JSON lines from train_speed.py, pytest's summary, nvidia-smi),
# which comes back even when the call runs out of time. Paste the tables into benchmarks/RESULTS.md with
# the card, torch version and date the log's first lines print.
#
# Rehearsal, on any machine before spending device time: GPU_CHECK_REHEARSE=1 bash benchmarks/gpu_check.sh
# runs every part on the CPU with the tiny preset (the CUDA-only tests skip, the memory part has no CUDA
# peak to compare), to catch a broken command line or a missing import without a GPU.
#
# Budget: the call may run 600 s; the script stops starting parts at 540 s (GPU_CHECK_BUDGET). A shorter call
# runs some parts only: GPU_CHECK_PARTS="df256 train tests" (ids, in the order they run: memory df256 train
# tests ckpt cudnn eager o64modes grads profile autotune; GRADS_K narrows the gradient tests' -k,
# PROFILE_CASES the profile's cases, TRAIN_CASES, DF_CASES and CUDNN_CASES the cases of parts train, df256
# and cudnn, TRAIN_CHECK the case `deepfake train` runs in part train, e.g. original64:64:auto:split). The
# swap speed check is not here: swap needs dlib's 68-point landmark model (97 MiB), over the device
# tool's 64 MiB transfer.
set -uo pipefail

OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DEEPFAKE_MEDIA="${DEEPFAKE_MEDIA:-$PWD/.gpu_media}"
PY=${PYTHON:-python3}
if [[ ${GPU_CHECK_REHEARSE:-0} == 1 ]]; then  # the same parts on the CPU, tiny sizes: plumbing only
    O64=tiny:2 DF=tiny:2 MEM='("tiny", 2),' MEM_DEV=cpu ON="--device cpu --faces 8" TRAIN_STEPS=16
else
    O64=original64:64 DF=df256:32 MEM='("original64", 64), ("df256", 16)' MEM_DEV=cuda ON="" TRAIN_STEPS=400
fi
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-540}  # seconds for the whole script; a part is skipped when it cannot fit

PARTS=${GPU_CHECK_PARTS:-all}  # e.g. "tests train df256": only the parts named (ids below), in this file's order

part() {  # part ID SECONDS TITLE COMMAND...: run COMMAND under a limit if the budget still allows it
    local id=$1 limit=$2 title=$3; shift 3
    [[ $PARTS == all || " $PARTS " == *" $id "* ]] || return 0
    local left=$((BUDGET - ($(date +%s) - START)))
    if (( left < 30 )); then
        echo "## $title: skipped, ${left} s of the budget left" | tee -a "$LOG"
        return
    fi
    (( limit > left )) && limit=$left
    echo "## $title (limit ${limit} s)" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    echo "## $title: exit ${PIPESTATUS[0]} after $(( $(date +%s) - START )) s in all" | tee -a "$LOG"
}

{
    date -u "+%Y-%m-%d %H:%M UTC"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>&1
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} 2>&1 | tee "$LOG"

# 1. The memory estimate (fake tensors, what `train --dry-run` prints) against the CUDA allocator's
#    peak of the same step run for real.
part memory 60 "memory: estimate vs CUDA" $PY -c "MEM = [$MEM]; DEV = '$MEM_DEV'"'
from dataclasses import replace
from deepfake.models import preset_config
from deepfake.train.memory import measure_train_step
for name, batch in MEM:
    cfg = preset_config(name)
    for ckpt in (False, True):
        c = replace(cfg, model=replace(cfg.model, checkpoint_decoder=ckpt))
        est = measure_train_step(c, batch, amp="bf16")
        real = measure_train_step(c, batch, amp="bf16", fake=False, device=DEV)
        cuda_peak = "-" if real.cuda_peak is None else f"{real.cuda_peak / 2**30:.2f}"
        print(f"{name} b{batch} checkpoint_decoder={ckpt}: estimate {est.peak / 2**30:.2f} GiB, "
              f"tracked on {DEV} {real.peak / 2**30:.2f} GiB, allocator peak {cuda_peak} GiB")
'

# 2. The targets, the one furthest from its target (df256) first. Each train_speed.py call measures its own
#    matmul peak and its own reference step in the same process, so the ratios hold whatever order they run in.
part df256 220 "df256 b32 GAN compile (target >= 60 % MFU)" \
    $PY benchmarks/train_speed.py --cases ${DF_CASES:-$DF:compile:gan} --steps 15 --warmup 3 --train-check none $ON
part train 260 "original64 b64 compile auto (target >= 26,000 faces/s) + GPU-busy in deepfake train" \
    $PY benchmarks/train_speed.py --cases ${TRAIN_CASES:-$O64:auto} --steps 100 --warmup 10 --train-check ${TRAIN_CHECK:-$O64:auto} --train-steps $TRAIN_STEPS $ON
# 2a. Correctness on CUDA, after the targets (a cold machine's compiles can leave no time for what comes
#    later): a checkpoint's copies to pinned memory not waiting for
#    the kernels queued around them, augmentation on the device against the CPU and the NumPy reference,
#    the face cache on the device, the losses inside CUDA's bf16 autocast against fp32 and SSIM against
#    float64 (TF32 must not reach it), the models' gradients against float64. (The tests that extract
#    faces need dlib and are deselected.)
part tests 150 "CUDA tests" $PY -m pytest -q -rs \
    tests/test_checkpoint_writer.py::test_on_cuda_a_save_does_not_wait_for_the_queued_steps tests/test_data_stream.py \
    tests/test_augment.py tests/test_augment_reference.py tests/test_data_cache.py tests/test_losses.py tests/test_models.py \
    -k 'not real_faces and not extracted' -p no:cacheprovider

# 2b. How long a checkpoint stops the loop: saved in the loop against SnapshotWriter's submit (copies
#     queued into pinned memory; the write on a thread), same process, same disk.
part ckpt 60 "checkpoint: in the loop vs on a thread" \
    $PY benchmarks/checkpoint_speed.py --presets ${CKPT_PRESETS:-original64} --repeat 3 $( [[ ${GPU_CHECK_REHEARSE:-0} == 1 ]] && echo --quick )
# 2c. cuDNN's autotuner tries 10 algorithms per convolution by default; df256 is convolution-bound, so:
#     does trying every one (benchmark_limit 0) find faster kernels? A separate process (cuDNN caches its
#     picks per process), with its own reference and matmul peak: compare MFU and ours/ref with part df256.
#     Trying every algorithm takes minutes for df256 (benchmarks/RESULTS.md), hence the long limit.
part cudnn 300 "df256 b32 GAN compile, cuDNN trying every algorithm" \
    $PY benchmarks/train_speed.py --cases ${CUDNN_CASES:-$DF:compile:gan} --steps 15 --warmup 3 --train-check none --cudnn-benchmark-limit 0 $ON
part eager 100 "eager baselines" \
    $PY benchmarks/train_speed.py --cases $O64:eager,$DF:eager:gan --steps 15 --warmup 3 --train-check none $ON
part o64modes 120 "original64 b64 compile in the default mode, and CUDA graphs" \
    $PY benchmarks/train_speed.py --cases $O64:compile,$O64:cudagraphs --steps 30 --warmup 5 --train-check none $ON

# 3. Compiled gradients on CUDA: the loss's gradient compiled vs eager, and gradient accumulation under
#    CUDA graphs summing every micro-batch (the tiny preset; eager vs replay).
part grads 150 "compiled gradients: loss, accumulation under CUDA graphs" $PY -m pytest -q -rs tests/test_compile.py \
    -k "${GRADS_K:-gradient_accumulation or loss_gradient}" -p no:cacheprovider

# 4. Diagnosis for whatever misses a target: torch.profiler's top kernels, launches per step and the
#    kernel time per family (convolution passes, matmuls, Inductor's kernels, optimizer, ...) of our
#    compiled steps as `deepfake train --compile` runs them (the inductor cache from part 2 makes the
#    recompile short).
part profile 100 "profile of our compiled steps" \
    $PY benchmarks/train_speed.py --cases ${PROFILE_CASES:-$O64:auto,$DF:compile:gan} --steps 5 --warmup 5 --train-check none --profile $ON

# 5. torch.compile's max-autotune (Triton templates benchmarked per shape, then CUDA graphs) on original64:
#    does any kernel beat cuDNN/cuBLAS's picks for this step? Minutes of compiling; last for that reason.
part autotune 180 "original64 b64 max-autotune" \
    $PY benchmarks/train_speed.py --cases $O64:autotune --steps 30 --warmup 5 --train-check none $ON

echo "## done in $(( $(date +%s) - START )) s" | tee -a "$LOG"
