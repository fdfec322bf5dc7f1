"""The training speed benchmark runs end to end in its CPU --quick mode (a smoke test: no speed claims).

It runs our real train step on real faces (crops of the shared clips) and the plain reference step
beside it, and must report every number the GPU run reports.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

from conftest import ROOT, media_path


def load_benchmark():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_reports_every_number(tmp_path, capsys):
    media_path("d6.mp4"), media_path("d14.mp4")
    bench = load_benchmark()
    out = tmp_path / "speed.json"
    assert bench.main(["--quick", "--faces", "6", "--cases", "tiny:2:eager:gan,tiny:2:eager:gan:split,tiny:2:eager:gan:id:tf",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["info"]["quick"] is True and result["info"]["matmul_tflops"] > 0
    case, split, likeness = result["cases"]
    assert case["case"] == "tiny:2:eager:gan" and case["gan"] is True and case["batch_sides"] is True
    # One pass per identity (split) runs beside it, against the same reference: the same arithmetic.
    assert split["batch_sides"] is False and split["ref_reused"] and split["faces_per_s"] > 0
    assert split["gflop_per_step"] == case["gflop_per_step"] and split["params_M"] == case["params_M"]
    # The identity loss and true face, timed in the same run: the identity net's work is counted too.
    assert likeness["identity"] and likeness["true_face"] and not case["identity"] and likeness["ref_reused"]
    assert likeness["faces_per_s"] > 0 and likeness["gflop_per_step"] > case["gflop_per_step"]
    for key in ("faces_per_s", "ref_faces_per_s", "tflops", "ref_tflops", "mfu_pct", "ratio_to_ref", "gflop_per_step"):
        assert case[key] > 0, key
    assert 0 < case["gpu_busy"] <= 1 and 0 < case["compute_over_full"] <= 1 and case["data_ms"] > 0
    # The timed steps also come as windows (2 steps: 2 windows of one), whose mean rate is the case's.
    windows = case["faces_per_s_windows"]
    assert len(windows) == 2 and all(w > 0 for w in windows)
    assert min(windows) * 0.99 <= case["faces_per_s"] <= max(windows) * 1.01
    # The busy fraction measured during `deepfake train` itself (the loop's own step timer).
    check = result["train_check"]
    assert check["train_check"] == "tiny:2:eager" and check["steps"] == 24 and len(check["busy_per_window"]) == 8
    assert 0 < check["gpu_busy"] <= 1 and all(0 < b <= 1 for b in check["busy_per_window"])
    assert case["peak_gib"] > 0
    # The reference has our architecture: the same parameter count (autoencoder + discriminator).
    assert case["params_M"] == case["ref_params_M"]
    # Real counts, of the same convolutions give or take: ours adds DSSIM's filters; the reference
    # also computes D's weight gradients in the G step (it does not freeze D).
    assert 0.8 < case["gflop_per_step"] / case["ref_gflop_per_step"] < 1.25
    printed = capsys.readouterr().out
    assert "| tiny:2:eager:gan |" in printed and "not a speed claim" in printed


def test_case_options_set_our_config_only():
    """`split` changes our step's settings (the A/B the device script runs), nothing else; an unknown
    option is refused."""
    import pytest
    import torch

    bench = load_benchmark()
    cpu = torch.device("cpu")
    base, mode = bench.case_config("df256:32:compile:gan", cpu)
    assert mode == "compile" and base.batch_sides and base.loss.gan_weight > 0
    split, _ = bench.case_config("df256:32:compile:gan:split", cpu)
    assert not split.batch_sides
    assert dataclasses.replace(split, batch_sides=True) == base
    likeness, _ = bench.case_config("df256:32:compile:gan:id:tf", cpu)
    assert likeness.loss.identity_weight > 0 and likeness.loss.true_face_weight > 0
    assert dataclasses.replace(likeness, loss=base.loss) == base
    with pytest.raises(SystemExit, match="unknown option"):
        bench.case_config("df256:32:compile:fast", cpu)


def test_profile_groups_kernels_by_family():
    """The profile part's breakdown: kernel names as CUDA's profiler reports them, grouped and summed
    per step (ms), so the next GPU session sees at once how much of a step is convolution."""
    bench = load_benchmark()
    kernels = [
        ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", 3000.0),
        ("sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", 2000.0),
        ("sm90_xmma_wgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc", 2500.0),
        ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT", 500.0),
        ("triton_poi_fused_leaky_relu_pixel_shuffle_3", 400.0),
        ("triton_red_fused_sum_12", 100.0),
        ("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<FusedAdamMathFunctor>", 300.0),
        ("void at::native::grid_sampler_2d_kernel<float, int>", 50.0),
        ("void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16, __nv_bfloat16>", 25.0),
        ("void cutlass__5x_cudnn::Kernel<cutlass_tensorop_bf16_s16816dgrad_optimized_bf16_128x64>", 500.0),
        ("void convolve_common_engine_float_NHWC<__nv_bfloat16, __nv_bfloat16, 128, 5>", 150.0),
        ("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl>", 15.0),
        ("some_new_kernel", 5.0),
    ]
    out = bench.kernel_breakdown(kernels, steps=5)
    assert out == {"conv forward": 0.6, "conv weight grad": 0.5, "conv input grad": 0.5, "matmul": 0.1,
                   "inductor pointwise": 0.08, "optimizer": 0.06, "conv generic engine": 0.03,
                   "inductor reduction": 0.02, "warp resampling": 0.01, "layout conversion": 0.005,
                   "aten elementwise/reduce": 0.003, "other": 0.001}
    assert list(out)[0] == "conv forward"  # largest first

    kernels.append(("void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl>", 25.0))
    top = bench.top_kernels_by_family(kernels, steps=5, top=1)
    assert list(top)[0] == "conv forward" and len(top) == 12  # every family, largest first
    assert top["aten elementwise/reduce"] == {"void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl>": [0.008, 0.4]}
    assert top["conv input grad"] == {"sm90_xmma_dgrad_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc": [0.4, 0.2]}  # not cutlass's 0.1


def test_a_failing_case_is_reported_and_the_next_case_still_runs(tmp_path, capsys, monkeypatch):
    """A GPU session is one call: a case that fails there (a compile error on the device) must not take
    the cases after it down. Its error is in its row and the table; the run exits 1."""
    media_path("d6.mp4"), media_path("d14.mp4")
    bench = load_benchmark()
    real_run_case = bench.run_case

    def run_case(case, *args, **kwargs):
        if case.endswith(":split"):
            raise RuntimeError("simulated compile failure\nwith a long traceback")
        return real_run_case(case, *args, **kwargs)

    monkeypatch.setattr(bench, "run_case", run_case)
    out = tmp_path / "speed.json"
    code = bench.main(["--quick", "--faces", "6", "--cases", "tiny:2:eager:split,tiny:2:eager", "--train-check", "none",
                       "--json", str(out)])
    assert code == 1
    failed, ran = json.loads(out.read_text())["cases"]
    assert failed == {"case": "tiny:2:eager:split", "error": "RuntimeError: simulated compile failure"}
    assert ran["case"] == "tiny:2:eager" and ran["faces_per_s"] > 0 and "error" not in ran
    captured = capsys.readouterr()
    assert "simulated compile failure" in captured.out and "Traceback" in captured.err
