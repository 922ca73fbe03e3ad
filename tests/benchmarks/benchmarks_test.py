"""Smoke tests: each benchmark runs on its tiniest setting in this process's backend and reports every column."""

import json
import pathlib
import sys

import keras
import numpy as np
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import components  # noqa: E402
import conv_gradient  # noqa: E402
import throughput  # noqa: E402
from _timing import PeakMemory  # noqa: E402
from _timing import cpu_description  # noqa: E402
from _timing import matmul_peak_gflops  # noqa: E402
from _timing import peak_gflops  # noqa: E402
from _timing import print_table  # noqa: E402


def test_table_json_and_mfu_from_measurements(capsys, tmp_path):
    measured = {
        "backend": "jax",
        "config": "tiny",
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 2,
        "seconds": {"openseg": 0.5, "deeplab": 0.25, "encoder": 0.1, "train": 2.0},
        "baseline_rss_bytes": 2**30,
        "max_rss_bytes": 3 * 2**30,
        "train_peak_rss_bytes": 2**29,
        "train_compile_level_bytes": 9 * 2**30,
        "train_steady_level_bytes": 7 * 2**30,
        "load_before": 1.0,
        "load_after": 1.0,
        "piece_seconds": {"encoder": 0.1, "mask_pooling": 0.3},
    }
    flops = {
        "openseg": {"flops": 40e9},
        "deeplab": {"flops": 10e9},
        "encoder": {"flops": 6e9},
        "train": {"flops": 120e9},
        "pieces": {"encoder": {"flops": 6e9}, "mask_pooling": {"flops": 3e9}},
    }
    # The backend's own peak in the row's dtype is the better of its matmul and conv; the machine's best is
    # the fastest backend x dtype.
    peaks = {
        "jax": {"float32": {"matmul": 90.0, "conv": 100.0, "best": 100.0}, "bfloat16": None},
        "torch": {
            "float32": {"matmul": 50.0, "conv": 60.0, "best": 60.0},
            "bfloat16": {"matmul": 400.0, "conv": 500.0},
        },
    }
    assert throughput.machine_best(peaks) == (500.0, "torch", "bfloat16", "conv")
    row = throughput.summarize(measured, flops, peaks)
    assert row["infer_images_per_s"] == pytest.approx(4.0)
    assert row["gflops_per_image"] == pytest.approx(20.0)
    assert row["achieved_gflops"] == pytest.approx(80.0)
    assert row["peak_gflops"] == 100.0
    assert row["mfu"] == pytest.approx(0.8)
    assert row["mfu_machine"] == pytest.approx(80.0 / 500.0)
    assert row["train_mfu_machine"] == pytest.approx(60.0 / 500.0)
    assert row["process_peak_rss_mb"] == pytest.approx(2048.0) and row["train_peak_rss_mb"] == pytest.approx(512.0)
    assert row["fits_8gb"] is True
    # The compiling first call and the compiled steps, each the process's own level (not above the baseline).
    assert row["first_step_max_rss_mb"] == pytest.approx(9 * 1024) and row["steady_step_max_rss_mb"] == 7 * 1024
    assert row["steady_fits_8gb"] is True
    assert row["deeplab_time_ratio"] == pytest.approx(2.0)
    assert row["deeplab_mfu"] == pytest.approx(0.4)
    assert row["encoder_mfu"] == pytest.approx(0.6)
    assert row["train_mfu"] == pytest.approx(0.6)
    pieces = throughput.breakdown_rows(measured, flops, peaks)
    assert [p["piece"] for p in pieces] == ["encoder", "mask_pooling"]
    assert pieces[1]["time_share"] == pytest.approx(0.75)
    assert pieces[1]["mfu"] == pytest.approx(0.1)
    print_table([row], throughput.COLUMNS)
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == throughput.COLUMNS
    json.dumps(row)  # what --json writes
    # No FLOPs (no JAX anywhere): times and ratios still, no mfu.
    assert throughput.summarize(measured, None).get("mfu") is None
    # bfloat16 / float32 speed-up per backend and config.
    half = dict(measured, dtype="bfloat16", seconds={**measured["seconds"], "openseg": 0.125, "train": 1.0})
    (speedup,) = throughput.speedup_rows([row, throughput.summarize(half, flops, peaks)])
    assert speedup["infer_bf16_over_fp32"] == pytest.approx(4.0) and speedup["train_bf16_over_fp32"] == pytest.approx(
        2.0
    )
    # --no-infer: a training step alone gives a row with its training figures and no inference ones.
    train_only = dict(measured, seconds={"train": 2.0})
    del train_only["piece_seconds"]
    train_row = throughput.summarize(train_only, flops, peaks)
    assert train_row["infer_images_per_s"] is None and train_row["mfu"] is None
    assert train_row["train_images_per_s"] == pytest.approx(1.0) and train_row["train_mfu"] == pytest.approx(0.6)
    (train_speedup,) = throughput.speedup_rows(
        [train_row, throughput.summarize(dict(train_only, dtype="bfloat16", seconds={"train": 1.0}), flops, peaks)]
    )
    assert train_speedup["infer_bf16_over_fp32"] is None and train_speedup["train_bf16_over_fp32"] == 2.0
    print_table([train_row], throughput.COLUMNS)
    (peak_row,) = throughput.peak_rows({"jax": peaks["jax"]})
    assert peak_row["fp32_conv"] == 100.0 and peak_row["bf16_matmul"] is None
    print_table([peak_row], throughput.PEAK_COLUMNS)


def test_dtype_and_jit_options():
    args = throughput.parse_args(["--dtype", "float32,bfloat16", "--jit", "off", "--warmup", "2", "--no-infer"])
    assert (args.dtypes, args.jit, args.warmup, args.no_infer) == (["float32", "bfloat16"], "off", 2, True)
    with pytest.raises(ValueError, match="measures nothing"):
        throughput.measure("tiny", "float32", breakdown=False, repeats=1, train=False, infer=False)
    with pytest.raises(SystemExit):
        throughput.parse_args(["--dtype", "int8"])


def test_peak_and_memory_helpers():
    assert matmul_peak_gflops(n=128, repeats=2) > 0
    peaks = peak_gflops(repeats=1, matmul_n=64, conv=dict(batch=1, size=8, channels=8, kernel=3))
    for dtype in ("float32", "bfloat16"):  # every backend runs both on a CPU
        assert peaks[dtype]["matmul"] > 0 and peaks[dtype]["conv"] > 0
        assert peaks[dtype]["best"] == max(peaks[dtype]["matmul"], peaks[dtype]["conv"])
    tracker = PeakMemory()
    tracker.reset()
    peak = tracker.peak_bytes()
    assert peak is None or peak >= 0


def test_cpu_description_names_the_model_and_the_bfloat16_units(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert cpu_description(str(cpuinfo)).startswith("Some CPU, ")
    assert cpu_description(str(cpuinfo)).endswith("amx_bf16 + avx512_bf16")
    cpuinfo.write_text("model name\t: Old CPU\nflags\t\t: avx2\n")
    assert cpu_description(str(cpuinfo)).endswith("no bfloat16 units")
    assert cpu_description(str(tmp_path / "missing")).startswith("unknown CPU")


# JAX's pass checks the FLOP counts (XLA cost analysis), torch's the timing of an eager backend; TensorFlow's
# program choice (`--jit`) is test_dtype_and_jit_options.
@pytest.mark.slow
@pytest.mark.end_to_end("jax", "torch", covered_by="jax counts the FLOPs, torch times an eager backend")
def test_throughput_tiny_config():
    # The peers (DeepLabV3+, the bare encoder) are timed on torch; JAX's pass is about OpenSeg's FLOP counts.
    jax = keras.backend.backend() == "jax"
    result = throughput.measure("tiny", "float32", breakdown=True, repeats=1, peers=not jax)
    assert result["max_rss_bytes"] >= result["baseline_rss_bytes"] > 0
    # The process's peak covers the compiling first call and the compiled steps (each read after its own reset).
    # (The baseline is the process's peak before the model, which in a test session can exceed these levels.)
    levels = (result["train_compile_level_bytes"], result["train_steady_level_bytes"])
    assert result["max_rss_bytes"] >= max(levels) and min(levels) > 0
    assert 0 <= result["train_peak_rss_bytes"] < max(levels)
    assert all(np.isfinite(value) for value in result["train_losses"].values())
    assert set(result["seconds"]) == ({"openseg", "train"} if jax else {"openseg", "deeplab", "encoder", "train"})
    assert set(result["piece_seconds"]) == {
        "encoder",
        "fpn_fusion",
        "mask_head+pe",
        "region_head",
        "mask_decoder",
        "mask_pooling",
    }
    flops = result.get("flops")
    if jax:
        # The backbone is its parts; the training step costs about three forward passes.
        parts = sum(piece["flops"] for piece in flops["pieces"].values())
        assert parts == pytest.approx(flops["openseg"]["flops"], rel=0.1)
        assert 2 < flops["train"]["flops"] / flops["openseg"]["flops"] < 5
    row = throughput.summarize(result, flops)
    assert row["infer_images_per_s"] > 0 and row["train_images_per_s"] > 0


@pytest.mark.slow
def test_components_quick():
    args = components.parse_args(["--quick", "--sections", "mask_pooling,grounding,model_memory"])
    result = components.measure(args)
    methods = {row["method"] for row in result["mask_pooling"]}
    assert methods == {"contraction (MaskPooling)", "materialized [B,N,H,W,D]"}
    assert {row["batch_size"] for row in result["grounding"]} == {8, 16}
    assert all(row["ms"] > 0 for row in result["grounding"])
    if keras.backend.backend() == "jax":
        assert {row["what"] for row in result["model_memory"]} == {"inference", "train step"}


def test_conv_gradient_small():
    row = conv_gradient.measure(batch=1, size=8, channels=4, repeats=1)
    assert set(row) == set(conv_gradient.COLUMNS)
    assert row["backend"] == keras.backend.backend()
    assert row["fwd_gflops"] > 0 and row["train_gflops"] > 0
    assert row["fwd_mfu"] == pytest.approx(row["fwd_gflops"] / row["matmul_peak_gflops"])


def test_components_forwards_flags_but_not_json(monkeypatch, tmp_path):
    calls = []
    import _timing

    monkeypatch.setattr(_timing, "backend_available", lambda name: True)
    monkeypatch.setattr(_timing, "run_in_backend", lambda name, script, flags: calls.append(flags) or {})
    out = tmp_path / "out.json"
    components.main(["--sections", "text", "--backends", "jax", "--json", str(out), "--quick"])
    assert calls == [["--sections", "text", "--backends", "jax", "--quick", "--_worker"]]
    assert json.loads(out.read_text()) == [{}]


def test_training_benchmark_precision_argument():
    # The worker itself is `keras-openseg train`'s set-up (tested per backend, bfloat16 in the quick demo test);
    # here: the precisions it accepts and the error naming the argument.
    import training

    assert training.parse_args(["--precision", "float32,bfloat16"]).precisions == ["float32", "bfloat16"]
    assert training.parse_args([]).precisions == ["float32"]
    with pytest.raises(SystemExit):
        training.parse_args(["--precision", "float16"])


def test_malloc_option_and_rows_per_policy():
    args = throughput.parse_args(["--malloc", "fixed,glibc"])
    assert args.mallocs == ["fixed", "glibc"]
    assert throughput.parse_args([]).mallocs == ["glibc"]  # keras-openseg's default
    with pytest.raises(SystemExit):
        throughput.parse_args(["--malloc", "jemalloc"])
    measured = {
        "backend": "torch",
        "config": "tiny",
        "dtype": "float32",
        "device": "cpu",
        "batch_size": 2,
        "seconds": {"train": 2.0},
        "load_before": 1.0,
        "load_after": 1.0,
    }
    rows = [
        throughput.summarize(dict(measured, malloc=malloc, dtype=dtype, seconds={"train": seconds}), None)
        for malloc, dtype, seconds in [("fixed", "float32", 2.0), ("glibc", "float32", 4.0), ("glibc", "bfloat16", 1.0)]
    ]
    assert [r["malloc"] for r in rows] == ["fixed", "glibc", "glibc"]
    # The bfloat16 / float32 speed-up compares rows of one allocator policy only.
    (speedup,) = throughput.speedup_rows(rows)
    assert (speedup["malloc"], speedup["train_bf16_over_fp32"]) == ("glibc", 4.0)


def test_xla_schedule_option_names_what_the_worker_got(monkeypatch):
    from keras_openseg.training import host_memory

    assert throughput.parse_args([]).xla_schedule == "default"
    with pytest.raises(SystemExit):
        throughput.parse_args(["--xla-schedule", "fast"])
    calls = []
    monkeypatch.setattr(host_memory, "use_memory_optimized_xla_schedule", lambda: calls.append(1) or True)
    assert throughput.apply_xla_schedule("default") == "default" and not calls  # XLA_FLAGS untouched
    assert throughput.apply_xla_schedule("memory") == "memory" and calls == [1]
    # XLA_FLAGS already chose a scheduler, or another jaxlib: the rows say so.
    monkeypatch.setattr(host_memory, "use_memory_optimized_xla_schedule", lambda: False)
    assert throughput.apply_xla_schedule("memory") == "unchanged"
