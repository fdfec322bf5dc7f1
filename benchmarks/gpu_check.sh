#!/usr/bin/env bash
# One prepared GPU session for issue 6: every check and timing that needs CUDA, in one call, most
# important first, each part under its own time limit so a slow compile cannot eat the others.
#
# On the lent device machine (its python3 already holds a CUDA torch, opencv, safetensors, tqdm,
# matplotlib, scipy and pytest; dlib and PyAV are not needed here), from the repository root:
#
#     ln -sfn ../shared/media .gpu_media         # here, once: a link, nothing is copied
#     device run, carry [".gpu_media/d6.mp4", ".gpu_media/d14.mp4"], timeout_s 600:
#         bash benchmarks/gpu_check.sh
#
# Runs so far, all 2026-11-26 (tables in benchmarks/RESULTS.md): an H100 (whole script), then H200s: runs 2-4
# (parts tests train df256 grads; train df256 grads profile autotune; tests train df256 kernels) and run 5
# (tests train df256 cudnn profile, then a second call that ran out of time).
# Run 5 (two H200 calls, seventh session) measured the shift-add heads' first version; its second call, on a
# cold machine, ran out of time before its new cases (df256's compile took 59 s there, 37 s warm): put the
# case that matters first. The eighth session had no GPU; it made the loop's log rows and the benchmark's
# windows stop draining the device (async_read.py) and moved checkpoint writes to a thread. The ninth had
# no GPU either; it added compile_scope "step" (whole_step.py: the whole G+D step, both Adam updates
# included, one graph). The tenth had none either. Next: GPU_CHECK_PARTS="df256 train whole tests ckpt profile"
# PROFILE_CASES=df256:32:compile:gan GPU_CHECK_BUDGET=540 (timeout_s 570): df256 with the shift-add heads'
# gathered gradient (its default) against cuDNN's direct heads, timed without drains; original64 and
# GPU-busy in `deepfake train`, the data wait per step (data_ms) against run 5's, which drained; the whole
# step as one graph (original64 and df256, their phases warm from the parts before); the CUDA tests,
# the whole step's among them; what a checkpoint costs the loop;
# then, if time is left, where df256's step time goes. Parts past the budget are skipped, and say so.
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
# runs some parts only: GPU_CHECK_PARTS="tests train df256 grads" (ids, in the order they run: memory df256 train whole tests ckpt cudnn
# eager o64modes kernels grads profile autotune; GRADS_K narrows the gradient tests' -k, PROFILE_CASES the profile's
# cases, TRAIN_CASES, DF_CASES and CUDNN_CASES the cases of parts train, df256 and cudnn, TRAIN_CHECK the
# case `deepfake train` runs in part train, e.g. original64:64:auto:shiftadd). The swap speed check is
# not here: swap needs dlib's 68-point landmark model (97 MiB), over the device tool's 64 MiB transfer.
set -uo pipefail

OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DEEPFAKE_MEDIA="${DEEPFAKE_MEDIA:-$PWD/.gpu_media}"
PY=${PYTHON:-python3}
if [[ ${GPU_CHECK_REHEARSE:-0} == 1 ]]; then  # the same parts on the CPU, tiny sizes: plumbing only
    O64=tiny:2 DF=tiny:2 MEM='("tiny", 2),' MEM_DEV=cpu ON="--device cpu --faces 8" TRAIN_STEPS=16 KQUICK=--quick
    SCOPE_ON="--device cpu --rounds 2 --steps 2"
else
    O64=original64:64 DF=df256:32 MEM='("original64", 64), ("df256", 16)' MEM_DEV=cuda ON="" TRAIN_STEPS=400
    SCOPE_ON=""
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

# 1b. The memory estimate (fake tensors, what `train --dry-run` prints) against the CUDA allocator's
#     peak of the same step run for real.
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

# 2. The targets, the one not yet met (df256) first. Each train_speed.py call measures its own matmul peak and its
#    own reference step in the same process, so the ratios hold whatever order they run in.
#    df256 beside its twin with the other model.head_conv (shift_add, the df presets' default: the decoder
#    heads as a matrix product and shifted sums where compiled; direct: cuDNN's convolution), the A/B of
#    that choice in the same process against the same reference measurement, the default first.
#    original64 alone since run 6 (run 5 A/B'd its heads: 19,916 against 19,698 faces/s, and twice the
#    peak memory with shift-add; TRAIN_CASES=$O64:auto,$O64:auto:shiftadd repeats it). (Runs 3 and 4
#    A/B'd the batched pass the same way: `split`.)
part df256 220 "df256 b32 GAN compile (target >= 60 % MFU)" \
    $PY benchmarks/train_speed.py --cases ${DF_CASES:-$DF:compile:gan,$DF:compile:gan:direct} --steps 15 --warmup 3 --train-check none $ON
part train 260 "original64 b64 compile auto (target >= 26,000 faces/s) + GPU-busy in deepfake train" \
    $PY benchmarks/train_speed.py --cases ${TRAIN_CASES:-$O64:auto} --steps 100 --warmup 10 --train-check ${TRAIN_CHECK:-$O64:auto} --train-steps $TRAIN_STEPS $ON
# 2a. compile_scope step: the whole G+D step, both Adam updates included, compiled as one graph (one CUDA
#    graph in original64's auto mode) instead of the two phases' forward-and-loss graphs.
#    benchmarks/compile_scope.py: both
#    scopes in one process from the same weights, timed in turns, with each one's first step (compile),
#    MFU (of the step alone, on fixed batches: higher than train_speed.py's, whose data section counts;
#    if the step scope wins, train_speed.py's df256:32:compile:gan:step is the number for the target) and
#    peak memory. On the CPU the two ran at the same speed and the step compiled 2.6x slower.
#    original64 first: where launches cost more than kernels, one CUDA graph for the whole step (the
#    optimizer included) is where it can pay; df256 is convolution-bound. The whole step's CUDA test (one
#    graph, no cudagraph skip, eager's losses in bf16) is in part tests, after: a scope that fails here
#    is reported in its row and the other is still timed.
part whole 360 "whole step as one graph: phases vs step on original64 and df256" bash -c "\
    $PY benchmarks/compile_scope.py --preset ${O64%%:*} --batch ${O64##*:} --mode auto $SCOPE_ON; \
    $PY benchmarks/compile_scope.py --preset ${DF%%:*} --batch ${DF##*:} --gan --mode default $SCOPE_ON"
# 2a'. Correctness on CUDA (after the targets since run 6: a cold machine's compiles left run 5's second
#    call no time for its new cases): the log rows' asynchronous read and a checkpoint's copies to pinned memory not
#    waiting for the kernels queued around them, augmentation on
#    the device against the CPU and the NumPy reference, the face cache on the device, the losses inside
#    CUDA's bf16 autocast against fp32 and SSIM against float64 (TF32 must not reach it). (The tests that
#    extract faces need dlib and are deselected.) Then the whole step's CUDA test.
part tests 150 "CUDA tests" bash -c "$PY -m pytest -q -rs tests/test_async_read.py \
    tests/test_checkpoint_writer.py::test_on_cuda_a_save_does_not_wait_for_the_queued_steps tests/test_data_stream.py tests/test_augment.py tests/test_augment_reference.py tests/test_data_cache.py tests/test_losses.py tests/test_models.py \
    -k 'not real_faces and not extracted' -p no:cacheprovider; \
    $PY -m pytest -q -rs tests/test_whole_step.py -k cuda -p no:cacheprovider"

# 2b. How long a checkpoint stops the loop: saved in the loop (as up to the seventh session) against
#     SnapshotWriter's submit (copies queued into pinned memory; the write on a thread), same process, same disk.
part ckpt 60 "checkpoint: in the loop vs on a thread" \
    $PY benchmarks/checkpoint_speed.py --presets ${CKPT_PRESETS:-original64} --repeat 3 $( [[ ${GPU_CHECK_REHEARSE:-0} == 1 ]] && echo --quick )
# 2c. cuDNN's autotuner tries 10 algorithms per convolution by default; df256 is convolution-bound, so:
#     does trying every one (benchmark_limit 0) find faster kernels? A separate process (cuDNN caches its
#     picks per process), with its own reference and matmul peak: compare MFU and ours/ref with part df256.
#     Run 5 (H200): not finished in 150 s, the autotuning of every algorithm alone takes minutes.
part cudnn 300 "df256 b32 GAN compile, cuDNN trying every algorithm" \
    $PY benchmarks/train_speed.py --cases ${CUDNN_CASES:-$DF:compile:gan} --steps 15 --warmup 3 --train-check none --cudnn-benchmark-limit 0 $ON
part eager 100 "eager baselines" \
    $PY benchmarks/train_speed.py --cases $O64:eager,$DF:eager:gan --steps 15 --warmup 3 --train-check none $ON
part o64modes 120 "original64 b64 compile in the default mode, and CUDA graphs" \
    $PY benchmarks/train_speed.py --cases $O64:compile,$O64:cudagraphs --steps 30 --warmup 5 --train-check none $ON

# 2d. Kernel-level choices against what they replaced (the decoder heads as one convolution, and the
#     shift-add candidate, each with its error against float64; the warp grid's separable upsampling),
#     original64 and df256 shapes.
part kernels 90 "kernel choices: decoder heads, warp upsampling" $PY benchmarks/kernel_choices.py ${KQUICK:-}

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
