"""OpenSeg inference/training throughput per backend, against the machine's matmul peak and DeepLabV3.

    python benchmarks/throughput.py                                   # reference + tiny, every backend here
    python benchmarks/throughput.py --configs tiny --backends jax --json out.json
    python benchmarks/throughput.py --configs reference --backends jax --breakdown   # per-component profile
    python benchmarks/throughput.py --configs reference --backends tensorflow,torch --dtype float32,bfloat16
    python benchmarks/throughput.py --peaks-only                      # each backend's peak table, nothing else

Each backend runs in its own interpreter (KERAS_BACKEND is fixed at import) on its default device (a GPU
when the backend sees one, else the CPU). In that interpreter one run measures, in turns so that load drifts
hit every program alike:

- the backend's peak per dtype on its fastest path (`_timing.peak_gflops`: a 2048^2 matmul and a 3x3
  256->256 convolution at 128x128, batch 4, NHWC, in float32 and bfloat16; TensorFlow through oneDNN without
  XLA, PyTorch channels_last, JAX through XLA), in a process of its own per backend, printed as a table;
- OpenSeg inference (`OpenSegBackbone`, every output) and one training step of `OpenSegModel`
  (L_G + alpha L_S, SGD with momentum; K=16 caption words, M=32 label masks at image size, the training
  recipe's defaults);
- the image encoder alone, and keras_hub's `DeepLabV3ImageSegmenter` (DeepLabV3+: ASPP on P5, P2 decoder,
  150 classes) on the same encoder at the same size: the closed-vocabulary peer.

Inference runs as the backend's compiled program (JAX jit; TensorFlow `tf.function`, with XLA when
`--jit` says so, by default `keras_openseg.models.compilation.default_jit_compile`; PyTorch eager, Keras'
default there) on inputs already on the device; training compiles with the same `jit_compile`. FLOPs per
image come from XLA's cost analysis of the compiled JAX float32 programs (the same Keras models; on a JAX
worker of its own when JAX is not among `--backends`), so every backend and dtype counts the same work.
`mfu` is achieved GFLOP/s over the backend's own peak in the row's dtype (the better of its matmul and
conv); `mfu_machine` over the machine's best (the fastest backend x dtype of the peak table). With both
float32 and bfloat16 in `--dtype`, a last table gives each backend's bfloat16 / float32 speed-up.

Memory: each worker reports its own process's peak resident set (`ru_maxrss`) minus the level after its
imports (`process_peak_rss_mb`), and the resident-set growth over the training step alone
(`train_peak_rss_mb`, Linux VmHWM reset before the step); `fits_8gb` says whether the process stayed below
8 GiB. The training step's first call traces and compiles it: the process's peak during that call
(`first_step_max_rss_mb`) and during the compiled steps after it (`steady_step_max_rss_mb`, VmHWM reset after
the first call; `steady_fits_8gb`) are reported apart, since an accelerator holds only the compiled step's
buffers while the compiler's own memory stays on the host. JAX also reports XLA's buffer assignment of the
train step (`xla_train_peak_mb`, JAX only). `--malloc` picks glibc's allocator policy per row: `glibc` (the
default, glibc's own raising threshold, under which freed buffers of up to 32 MiB stay in a fragmented heap)
or `fixed` (`keras-openseg COMMAND --low-host-memory`: `keras_openseg.training.host_memory.fix_mmap_threshold`,
freed tensor buffers leave the process).
`--xla-schedule memory` compiles JAX's programs with XLA:CPU's memory-optimized scheduler instead of its
concurrency-optimized default (`use_memory_optimized_xla_schedule`, what `keras-openseg` does on JAX); the FLOP
worker's buffer assignment (`xla_train_peak_mb`) follows it unless `--flops-from` reuses an earlier run's.

The reference config is the one the performance issue fixes: a ResNet-50 keras_hub encoder (random weights;
nothing is downloaded), 512x512, N=128 queries, hidden 256, embedding 512, batch 4. Absolute numbers on a
shared machine drift with its load; compare the ratios of one run (mfu, deeplab_time_ratio), and repeat.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "reference": dict(
        encoder="resnet50",
        image_size=512,
        num_queries=128,
        hidden_dim=256,
        embedding_dim=512,
        batch_size=4,
        repeats=3,
    ),
    "tiny": dict(
        encoder="tiny",
        image_size=64,
        num_queries=8,
        hidden_dim=16,
        embedding_dim=16,
        batch_size=2,
        repeats=3,
    ),
}
NUM_WORDS = 16
NUM_MASKS = 32
DEEPLAB_CLASSES = 150
COLUMNS = [
    "backend",
    "config",
    "dtype",
    "malloc",
    "xla_schedule",
    "infer_images_per_s",
    "train_images_per_s",
    "gflops_per_image",
    "achieved_gflops",
    "jit_compile",
    "peak_gflops",
    "mfu",
    "mfu_machine",
    "train_mfu",
    "train_mfu_machine",
    "encoder_mfu",
    "deeplab_time_ratio",
    "deeplab_mfu",
    "mfu_cputime",
    "process_peak_rss_mb",
    "train_peak_rss_mb",
    "fits_8gb",
    "steady_step_max_rss_mb",
    "steady_fits_8gb",
    "load_before",
]
PEAK_COLUMNS = ["backend", "path", "fp32_matmul", "fp32_conv", "bf16_matmul", "bf16_conv", "load"]
SPEEDUP_COLUMNS = ["backend", "config", "malloc", "infer_bf16_over_fp32", "train_bf16_over_fp32", "load"]
GIB = 2**30
BREAKDOWN_COLUMNS = [
    "backend",
    "config",
    "piece",
    "gflops_per_image",
    "ms_per_batch",
    "time_share",
    "achieved_gflops",
    "mfu",
    "mfu_cputime",
]


def image_encoder(kind):
    """A keras_hub ResNet with random weights: ResNet-50 (v1, bottleneck blocks) or a tiny one."""
    import keras_hub

    if kind == "resnet50":
        return keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=[3, 4, 6, 3],
            stackwise_num_strides=[1, 2, 2, 2],
            block_type="bottleneck_block",
            image_shape=(None, None, 3),
        )
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16, 16, 16],
        stackwise_num_blocks=[1, 1, 1, 1],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block",
        image_shape=(None, None, 3),
    )


# The forward programs `prepare` can build: OpenSeg's backbone and its two peers.
FORWARD_PROGRAMS = ("openseg", "deeplab", "encoder")


def build_models(config, peers=True):
    """OpenSegModel, keras_hub DeepLabV3+ and a bare encoder, each with its own random encoder (`peers=False`:
    the OpenSegModel and two Nones)."""
    import keras_hub

    from keras_openseg.models import OpenSegBackbone
    from keras_openseg.models import OpenSegModel

    heads = max(1, min(8, config["hidden_dim"] // 8))
    backbone = OpenSegBackbone(
        image_encoder=image_encoder(config["encoder"]),
        num_queries=config["num_queries"],
        hidden_dim=config["hidden_dim"],
        embedding_dim=config["embedding_dim"],
        decoder_heads=heads,
        position_grid=(config["image_size"] // 4,) * 2,
    )
    model = OpenSegModel(backbone=backbone)
    if not peers:
        return model, None, None
    deeplab = keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=keras_hub.models.DeepLabV3Backbone(
            image_encoder=image_encoder(config["encoder"]),
            spatial_pyramid_pooling_key="P5",
            upsampling_size=8,
            dilation_rates=[6, 12, 18],
            low_level_feature_key="P2",
        ),
        num_classes=DEEPLAB_CLASSES,
    )
    return model, deeplab, image_encoder(config["encoder"])


def make_batch(config):
    """Random images (0..255), caption word embeddings and label masks of the config's size (numpy)."""
    import numpy as np

    rng = np.random.default_rng(0)
    b, s, e = config["batch_size"], config["image_size"], config["embedding_dim"]
    images = rng.uniform(0, 255, (b, s, s, 3)).astype("float32")
    x = {
        "images": images,
        "word_embeddings": rng.standard_normal((b, NUM_WORDS, e)).astype("float32"),
        "word_valid": np.arange(NUM_WORDS)[None, :] < rng.integers(1, NUM_WORDS + 1, (b, 1)),
    }
    y = {
        "masks": (rng.uniform(size=(b, NUM_MASKS, s, s)) > 0.5).astype("float32"),
        "mask_valid": np.arange(NUM_MASKS)[None, :] < rng.integers(1, NUM_MASKS + 1, (b, 1)),
    }
    return images, x, y


def breakdown_pieces(backbone, image_size):
    """The OpenSeg backbone cut into its components, each a Keras model sharing the backbone's layers.

    Returns a list of `(name, model, input_from)` where `input_from(outputs)` picks the piece's input from
    the outputs of the pieces before it (keyed by name, "images" for the images).
    """
    import keras
    from keras import ops

    images = keras.Input((image_size, image_size, 3))
    pyramid = backbone.feature_extractor(images)
    pyramid_inputs = {level: keras.Input(tensor.shape[1:], name=level) for level, tensor in pyramid.items()}
    fused = backbone.fpn_fusion(pyramid_inputs)
    fused_input = keras.Input(fused.shape[1:])
    mask_features = backbone.position_embedding(backbone.mask_head(fused_input))
    pixel_embeddings = backbone.region_head(fused_input)
    mask_features_input = keras.Input(mask_features.shape[1:])
    _, mask_logits = backbone.mask_decoder(mask_features_input)
    logits_input = keras.Input(mask_logits.shape[1:])
    pixels_input = keras.Input(pixel_embeddings.shape[1:])
    region_embeddings = backbone.mask_pooling(ops.sigmoid(logits_input), pixels_input)
    return [
        ("encoder", keras.Model(images, pyramid), lambda o: o["images"]),
        ("fpn_fusion", keras.Model(pyramid_inputs, fused), lambda o: o["encoder"]),
        ("mask_head+pe", keras.Model(fused_input, mask_features), lambda o: o["fpn_fusion"]),
        ("region_head", keras.Model(fused_input, pixel_embeddings), lambda o: o["fpn_fusion"]),
        ("mask_decoder", keras.Model(mask_features_input, mask_logits), lambda o: o["mask_head+pe"]),
        (
            "mask_pooling",
            keras.Model([logits_input, pixels_input], region_embeddings),
            lambda o: [o["mask_decoder"], o["region_head"]],
        ),
    ]


def resolve_jit(jit, dtype):
    """`--jit` -> the `jit_compile` of this backend: JAX always compiles, torch runs eagerly, TensorFlow
    follows `jit` (`auto`: `keras_openseg.models.compilation.default_jit_compile`)."""
    import keras

    from keras_openseg.models.compilation import default_jit_compile

    name = keras.backend.backend()
    if name != "tensorflow":
        return name == "jax"
    if jit == "auto":
        return default_jit_compile("float32" if dtype == "float32" else f"mixed_{dtype}")
    return jit == "on"


def max_rss_bytes():
    """This process's peak resident set so far (`ru_maxrss`, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(
    config_name,
    dtype,
    breakdown,
    repeats,
    jit="auto",
    warmup=1,
    peers=True,
    train=True,
    infer=True,
    malloc="glibc",
    xla_schedule="default",
):
    """Runs in the benchmark's per-backend interpreter; returns times, memory and (JAX) FLOPs.

    `malloc="fixed"` fixes glibc's mmap threshold first, as `keras-openseg COMMAND --low-host-memory` does;
    `"glibc"` leaves glibc's own policy.

    `xla_schedule` names the XLA:CPU schedule this worker's process compiles with, for the row (JAX only):
    `main` applies it before anything computes (`apply_xla_schedule`).

    `infer=False` times the training step alone, so that the process's peak memory is the training step's
    (inference timed first in the same process leaves memory that glibc keeps).
    """
    if not (infer or train):
        raise ValueError("--no-infer with --no-train measures nothing")
    import keras
    from _timing import PeakMemory
    from _timing import device_description
    from _timing import interleaved_seconds
    from _timing import load_average
    from _timing import set_dtype
    from _timing import sync

    import keras_openseg.models  # noqa: F401  (the imports belong to the baseline)
    from keras_openseg.training.host_memory import fix_mmap_threshold

    if malloc == "fixed" and not fix_mmap_threshold():
        malloc = "unchanged"  # not glibc, or the caller's MALLOC_MMAP_THRESHOLD_ decides: the row says so

    name = keras.backend.backend()
    config = CONFIGS[config_name]
    repeats = repeats or config["repeats"]
    set_dtype(dtype)
    jit_compile = resolve_jit(jit, dtype)
    baseline_rss = max_rss_bytes()
    result = {"backend": name, "config": config_name, "dtype": dtype, "malloc": malloc}
    result["xla_schedule"] = xla_schedule if name == "jax" else None
    result["device"] = device_description()
    result["jit_compile"] = jit_compile
    result["load_before"] = load_average()
    # Only what is timed is built: the peers' weights would count in the process's memory.
    forward = (FORWARD_PROGRAMS if peers else ("openseg",)) if infer else ()
    model, programs, (images, x, y) = prepare(config, jit_compile, forward)
    start = time.perf_counter()
    for program in programs.values():
        sync(program(images))
    result["compile_seconds"] = time.perf_counter() - start
    timed = interleaved_seconds(
        {k: (lambda p=p: p(images)) for k, p in programs.items()}, repeats=repeats, warmup=warmup
    )
    result["seconds"] = {k: v["min"] for k, v in timed.items()}
    result["cpu_seconds"] = {k: v["cpu_min"] for k, v in timed.items()}
    result["all_seconds"] = {k: v["times"] for k, v in timed.items()}

    # The tracker's reset (Linux VmHWM) also resets the kernel's peak that `ru_maxrss` reads, so the peak before
    # each reset is kept here: the process's peak is the largest of them and the last.
    peaks_seen = [max_rss_bytes()]
    if train:
        model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=jit_compile)
        # keras.Model's own train_on_batch: keras_hub's PipelineModel override converts `y` with one
        # convert_to_tensor call, which fails on the label dict (fit is unaffected).
        losses = {}
        train_step = lambda: losses.update(keras.Model.train_on_batch(model, x, y, return_dict=True))  # noqa: E731
        tracker = PeakMemory()
        tracker.reset()
        start_level = tracker.base
        sync(train_step())  # the first call traces and compiles the step (and runs it once)
        first_peak = tracker.peak_level_bytes()
        peaks_seen.append(max_rss_bytes())
        # The compiled step alone, from here on: what an accelerator holding the compiled program needs.
        tracker.reset()
        timed = interleaved_seconds({"train": train_step}, repeats=repeats, warmup=max(warmup, 1) - 1)
        steady_peak = tracker.peak_level_bytes()
        peaks_seen.append(max_rss_bytes())
        if first_peak is not None and steady_peak is not None:
            result["train_peak_rss_bytes"] = max(first_peak, steady_peak) - start_level
            result["train_compile_level_bytes"] = first_peak
            result["train_steady_level_bytes"] = steady_peak
        result["train_losses"] = {k: float(keras.ops.convert_to_numpy(v)) for k, v in losses.items()}
        result["seconds"]["train"] = timed["train"]["min"]
        result["cpu_seconds"]["train"] = timed["train"]["cpu_min"]
        result["all_seconds"]["train"] = timed["train"]["times"]
    result["batch_size"] = config["batch_size"]
    result["baseline_rss_bytes"] = baseline_rss
    result["max_rss_bytes"] = max(*peaks_seen, max_rss_bytes())

    piece_programs = compiled_pieces(model, images, config, jit_compile) if breakdown else None
    if breakdown:
        timed = interleaved_seconds(
            {piece: (lambda p=p, i=i: p(i)) for piece, (p, i) in piece_programs.items()}, repeats=repeats
        )
        result["piece_seconds"] = {k: v["min"] for k, v in timed.items()}
        result["piece_cpu_seconds"] = {k: v["cpu_min"] for k, v in timed.items()}

    if name == "jax" and dtype == "float32" and infer:
        result["flops"] = jax_flops(programs, model, images, x, y, piece_programs)
    result["load_after"] = load_average()
    return result


def measure_peaks(repeats):
    """Runs in a per-backend interpreter: the backend's peak table row (`_timing.peak_gflops`)."""
    import keras
    from _timing import device_description
    from _timing import fastest_path
    from _timing import load_average
    from _timing import peak_gflops

    return {
        "backend": keras.backend.backend(),
        "device": device_description(),
        "path": fastest_path(),
        "load_before": load_average(),
        "peaks": peak_gflops(repeats=repeats or 5),
        "load_after": load_average(),
    }


def jax_flops(programs, model, images, x, y, piece_programs=None):
    """FLOPs and memory of the compiled JAX programs (XLA cost and memory analysis), per batch."""
    from _timing import jax_train_step_analysis
    from _timing import xla_analysis

    flops = {name: xla_analysis(program.lower(images)) for name, program in programs.items()}
    flops["train"] = jax_train_step_analysis(model, x, y)
    if piece_programs:
        flops["pieces"] = {
            piece: xla_analysis(program.lower(inputs)) for piece, (program, inputs) in piece_programs.items()
        }
    return flops


def count_flops(config_name, dtype, breakdown):
    """Runs in a JAX interpreter when JAX is not among the measured backends: FLOPs only, nothing timed."""
    import keras
    from _timing import set_dtype

    config = CONFIGS[config_name]
    set_dtype(dtype)
    model, programs, (images, x, y) = prepare(config)
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=True)
    keras.Model.train_on_batch(model, x, y)  # builds the optimizer and metric variables
    piece_programs = compiled_pieces(model, images, config) if breakdown else None
    return {"flops": jax_flops(programs, model, images, x, y, piece_programs)}


def prepare(config, jit_compile=True, forward=FORWARD_PROGRAMS):
    """The seeded models of `config`, the compiled forward programs named in `forward` and a batch on the device
    (`jit_compile`: whether TensorFlow's programs use XLA). The peers are built only when `forward` names one.

    Returns `(model, {name in forward: program}, (images, x, y))`.
    """
    import keras
    from _timing import compiled_forward
    from _timing import to_device

    keras.utils.set_random_seed(0)
    model, deeplab, encoder = build_models(config, peers=bool({"deeplab", "encoder"} & set(forward)))
    images, x, y = (to_device(part) for part in make_batch(config))
    networks = {"openseg": model.backbone, "deeplab": deeplab, "encoder": encoder}
    programs = {name: compiled_forward(networks[name], jit_compile) for name in forward}
    return model, programs, (images, x, y)


def compiled_pieces(model, images, config, jit_compile=True):
    """`{piece: (compiled program, its input)}` for the backbone's components (`breakdown_pieces`), each
    fed the output of the pieces before it."""
    from _timing import compiled_forward
    from _timing import sync

    outputs = {"images": images}
    pieces = {}
    for piece, piece_model, input_from in breakdown_pieces(model.backbone, config["image_size"]):
        program = compiled_forward(piece_model, jit_compile)
        outputs[piece] = sync(program(input_from(outputs)))
        pieces[piece] = (program, input_from(outputs))
    return pieces


def machine_best(peaks):
    """The fastest `(GFLOP/s, backend, dtype, kind)` of a peak table `{backend: {dtype: {...}}}`, or None."""
    best = None
    for backend_name, by_dtype in (peaks or {}).items():
        for dtype, row in by_dtype.items():
            for kind in ("matmul", "conv"):
                if row and row.get(kind) and (best is None or row[kind] > best[0]):
                    best = (row[kind], backend_name, dtype, kind)
    return best


def _mib(value):
    return value / 2**20 if value is not None else None


def summarize(measured, flops, peaks=None):
    """One table row from a backend's times, the (JAX) FLOPs of the same config and the peak table."""
    b = measured["batch_size"]
    seconds = measured["seconds"]
    own = ((peaks or {}).get(measured["backend"]) or {}).get(measured["dtype"])
    peak = own["best"] if own else None
    best = machine_best(peaks)
    baseline = measured.get("baseline_rss_bytes")
    max_rss = measured.get("max_rss_bytes")
    train_rss = measured.get("train_peak_rss_bytes")
    steady = measured.get("train_steady_level_bytes")
    row = {
        "backend": measured["backend"],
        "config": measured["config"],
        "dtype": measured["dtype"],
        "malloc": measured.get("malloc", "glibc"),
        "xla_schedule": measured.get("xla_schedule"),
        "device": measured["device"],
        "jit_compile": measured.get("jit_compile"),
        "infer_images_per_s": b / seconds["openseg"] if "openseg" in seconds else None,
        "train_images_per_s": b / seconds["train"] if "train" in seconds else None,
        "peak_gflops": peak,
        "machine_best_gflops": best[0] if best else None,
        "machine_best": f"{best[1]} {best[2]} {best[3]}" if best else None,
        "deeplab_time_ratio": seconds["openseg"] / seconds["deeplab"] if "deeplab" in seconds else None,
        "encoder_time_ratio": seconds["openseg"] / seconds["encoder"] if "encoder" in seconds else None,
        "seconds_per_batch": seconds,
        "train_losses": measured.get("train_losses"),
        "process_peak_rss_mb": (max_rss - baseline) / 2**20 if max_rss and baseline else None,
        "process_max_rss_mb": max_rss / 2**20 if max_rss else None,
        "train_peak_rss_mb": _mib(train_rss),
        "fits_8gb": bool(max_rss < 8 * GIB) if max_rss else None,
        "first_step_max_rss_mb": _mib(measured.get("train_compile_level_bytes")),
        "steady_step_max_rss_mb": _mib(steady),
        "steady_fits_8gb": bool(steady < 8 * GIB) if steady else None,
        "load_before": measured["load_before"],
        "load_after": measured["load_after"],
        "flops_source": None,
    }
    if flops:

        def gflops(name):
            return flops[name]["flops"] / b / 1e9 if name in flops else None

        def achieved(name):
            return gflops(name) * b / seconds[name] if name in seconds and gflops(name) is not None else None

        def ratio(name, denominator):
            return achieved(name) / denominator if denominator and name in seconds and name in flops else None

        def mfu_cputime(name):
            cpu = measured.get("cpu_seconds", {}).get(name)
            cpu_peak = own.get("best_cputime") if own else None
            return gflops(name) * b / cpu / cpu_peak if cpu and cpu_peak else None

        machine = best[0] if best else None
        row.update(
            {
                "flops_source": "xla_cost_analysis(jax, float32)",
                "gflops_per_image": gflops("openseg"),
                "achieved_gflops": achieved("openseg"),
                "mfu": ratio("openseg", peak),
                "mfu_machine": ratio("openseg", machine),
                "encoder_gflops_per_image": gflops("encoder"),
                "encoder_mfu": ratio("encoder", peak),
                "deeplab_gflops_per_image": gflops("deeplab"),
                "deeplab_mfu": ratio("deeplab", peak),
                "train_gflops_per_image": gflops("train"),
                "train_mfu": ratio("train", peak),
                "train_mfu_machine": ratio("train", machine),
                "mfu_cputime": mfu_cputime("openseg"),
                "train_mfu_cputime": mfu_cputime("train"),
                "xla_openseg_peak_mb": flops["openseg"].get("peak_bytes", 0) / 2**20,
                "xla_train_peak_mb": flops["train"].get("peak_bytes", 0) / 2**20,
            }
        )
    return row


def peak_rows(peaks, loads=None):
    """The peak table: one row per backend, GFLOP/s of each kind x dtype."""
    rows = []
    for backend_name, by_dtype in peaks.items():
        row = {"backend": backend_name, "path": (loads or {}).get(backend_name, {}).get("path")}
        for dtype, short in (("float32", "fp32"), ("bfloat16", "bf16")):
            for kind in ("matmul", "conv"):
                row[f"{short}_{kind}"] = (by_dtype.get(dtype) or {}).get(kind)
        row["load"] = (loads or {}).get(backend_name, {}).get("load_before")
        rows.append(row)
    return rows


def speedup_rows(rows):
    """bfloat16 / float32 images/s per backend and config, where both dtypes were measured."""
    by_key = {(r["backend"], r["config"], r["malloc"], r["dtype"]): r for r in rows}
    result = []
    for (backend_name, config, malloc, dtype), row in by_key.items():
        base = by_key.get((backend_name, config, malloc, "float32"))
        if dtype != "bfloat16" or base is None:
            continue
        result.append(
            {
                "backend": backend_name,
                "config": config,
                "malloc": malloc,
                "infer_bf16_over_fp32": (
                    row["infer_images_per_s"] / base["infer_images_per_s"] if base["infer_images_per_s"] else None
                ),
                "train_bf16_over_fp32": (
                    row["train_images_per_s"] / base["train_images_per_s"] if base["train_images_per_s"] else None
                ),
                "load": row["load_before"],
            }
        )
    return result


def breakdown_rows(measured, flops, peaks=None):
    if "piece_seconds" not in measured:
        return []
    b = measured["batch_size"]
    own = ((peaks or {}).get(measured["backend"]) or {}).get(measured["dtype"]) or {}
    peak = own.get("best")
    total = sum(measured["piece_seconds"].values())
    rows = []
    for piece, seconds in measured["piece_seconds"].items():
        row = {
            "backend": measured["backend"],
            "config": measured["config"],
            "piece": piece,
            "ms_per_batch": 1000 * seconds,
            "time_share": seconds / total,
        }
        piece_flops = (flops or {}).get("pieces", {}).get(piece)
        if piece_flops:
            row["gflops_per_image"] = piece_flops["flops"] / b / 1e9
            row["achieved_gflops"] = piece_flops["flops"] / seconds / 1e9
            row["mfu"] = row["achieved_gflops"] / peak if peak else None
            cpu = measured.get("piece_cpu_seconds", {}).get(piece)
            if cpu and own.get("best_cputime"):
                row["mfu_cputime"] = piece_flops["flops"] / cpu / 1e9 / own["best_cputime"]
        rows.append(row)
    return rows


DTYPES = ("float32", "bfloat16", "float16")
MALLOCS = ("fixed", "glibc")
XLA_SCHEDULES = ("default", "memory")


def apply_xla_schedule(xla_schedule):
    """Runs first in a worker: asks for XLA:CPU's memory-optimized schedule where `xla_schedule` is "memory" (what
    `keras-openseg` does on JAX); returns the schedule the worker's programs get, as its rows name it."""
    from keras_openseg.training.host_memory import use_memory_optimized_xla_schedule

    if xla_schedule == "memory" and not use_memory_optimized_xla_schedule():
        return "unchanged"  # XLA_FLAGS already chose, or another jaxlib: the row says so
    return xla_schedule


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="reference,tiny", help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated; missing ones skipped")
    parser.add_argument("--dtype", default="float32", help="comma-separated: " + ", ".join(DTYPES))
    parser.add_argument(
        "--malloc",
        default="glibc",
        help="comma-separated: glibc (glibc's own policy), fixed (--low-host-memory: a fixed mmap threshold)",
    )
    parser.add_argument(
        "--xla-schedule",
        default="default",
        choices=XLA_SCHEDULES,
        help="JAX's XLA:CPU schedule: default (XLA's, concurrency-optimized) or memory (its memory-optimized "
        "scheduler, what keras-openseg uses on JAX)",
    )
    parser.add_argument(
        "--jit",
        default="auto",
        choices=["auto", "on", "off"],
        help="TensorFlow's jit_compile (XLA) for inference and training; auto: the package's default_jit_compile",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per program (default: config's)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per program first (default 1)")
    parser.add_argument("--breakdown", action="store_true", help="also time and count each backbone component")
    parser.add_argument("--peaks-only", action="store_true", help="print each backend's peak table and stop")
    parser.add_argument("--no-peers", action="store_true", help="time OpenSeg only (no DeepLabV3+, no bare encoder)")
    parser.add_argument("--no-train", action="store_true", help="time inference only")
    parser.add_argument(
        "--no-infer",
        action="store_true",
        help="time the training step only: the process's peak memory is then the training step's own",
    )
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--flops-from", help="reuse the FLOP counts of an earlier --json (same configs)")
    parser.add_argument("--peaks-from", help="reuse the peak table of an earlier --json instead of measuring it")
    parser.add_argument("--_worker", choices=["measure", "flops", "peaks"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    dtypes = [d for d in args.dtype.split(",") if d]
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown or not dtypes:
        parser.error(f"--dtype: unknown {unknown}; choose from {list(DTYPES)}")
    args.dtypes = dtypes
    mallocs = [m for m in args.malloc.split(",") if m]
    unknown = [m for m in mallocs if m not in MALLOCS]
    if unknown or not mallocs:
        parser.error(f"--malloc: unknown {unknown}; choose from {list(MALLOCS)}")
    args.mallocs = mallocs
    return args


def main(argv=None):
    args = parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)}")
    if args._worker:
        # Before anything computes (XLA reads its flags once): the rows' timings and the FLOP worker's buffer
        # assignment under the same schedule. The peak table is each backend's kernels, whatever the schedule.
        if args._worker != "peaks":
            xla_schedule = apply_xla_schedule(args.xla_schedule)
        if args._worker == "peaks":
            result = measure_peaks(args.repeats)
        elif args._worker == "measure":
            (config,), (dtype,) = configs, args.dtypes
            result = measure(
                config,
                dtype,
                args.breakdown,
                args.repeats,
                args.jit,
                args.warmup,
                not args.no_peers,
                not args.no_train,
                not args.no_infer,
                args.malloc,
                xla_schedule,
            )
        else:
            (config,), (dtype,) = configs, args.dtypes
            result = count_flops(config, dtype, args.breakdown)
        print("RESULT " + json.dumps(result))
        return 0

    from _timing import backend_available
    from _timing import cpu_description
    from _timing import print_table
    from _timing import run_in_backend

    backends = [b for b in args.backends.split(",") if b]
    missing = [b for b in backends if not backend_available(b)]
    if missing:
        print(f"skipping backends that cannot be imported here: {missing}", file=sys.stderr)
    # JAX first: its float32 worker also returns the FLOPs every row uses.
    backends = sorted((b for b in backends if b not in missing), key=lambda b: b != "jax")

    def worker(backend_name, kind, config=None, dtype="float32", malloc="glibc"):
        flags = ["--_worker", kind, "--dtype", dtype, "--jit", args.jit, "--warmup", str(args.warmup)]
        flags += ["--malloc", malloc, "--xla-schedule", args.xla_schedule]
        flags += ["--configs", config] if config else []
        flags += ["--breakdown"] if args.breakdown else []
        flags += ["--no-peers"] if args.no_peers else []
        flags += ["--no-train"] if args.no_train else []
        flags += ["--no-infer"] if args.no_infer else []
        flags += ["--repeats", str(args.repeats)] if args.repeats else []
        return run_in_backend(backend_name, os.path.abspath(__file__), flags)

    # Each backend's peak in a process of its own, before any model (nothing else in memory).
    if args.peaks_from:
        with open(args.peaks_from) as f:
            peak_results = json.load(f)["peaks"]
    else:
        peak_results = {name: worker(name, "peaks") for name in backends}
    peaks = {name: result["peaks"] for name, result in peak_results.items()}
    cpu = cpu_description()
    print(f"CPU: {cpu}")
    print_table(peak_rows(peaks, peak_results), PEAK_COLUMNS)
    best = machine_best(peaks)
    if best:
        print(f"machine's best: {best[0]:.0f} GFLOP/s ({best[1]} {best[2]} {best[3]})")
    sys.stdout.flush()
    if args.peaks_only:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"cpu": cpu, "peaks": peak_results}, f, indent=2)
        return 0

    earlier = {}
    if args.flops_from:
        with open(args.flops_from) as f:
            earlier = {r["config"]: r["flops"] for r in json.load(f)["raw"] if r.get("flops")}
    rows, pieces, raw = [], [], []
    for config in configs:
        flops = earlier.get(config)
        for malloc, dtype in [(m, d) for m in args.mallocs for d in args.dtypes]:
            measured = [worker(name, "measure", config, dtype, malloc) for name in backends]
            flops = flops or next((m["flops"] for m in measured if "flops" in m), None)
            if flops is None and backend_available("jax"):
                flops = worker("jax", "flops", config)["flops"]
            for m in measured:
                rows.append(summarize(m, flops, peaks))
                pieces.extend(breakdown_rows(m, flops, peaks))
                raw.append(dict(m, flops=flops))
            print_table(rows[-len(measured) :], COLUMNS)
    if len(rows) > len(backends):
        print()
        print_table(rows, COLUMNS)
    speedups = speedup_rows(rows)
    if speedups:
        print()
        print_table(speedups, SPEEDUP_COLUMNS)
    if pieces:
        print()
        print_table(pieces, BREAKDOWN_COLUMNS)
    if args.json:
        with open(args.json, "w") as f:
            record = {"cpu": cpu, "peaks": peak_results, "rows": rows, "speedups": speedups}
            json.dump(dict(record, breakdown=pieces, raw=raw), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
