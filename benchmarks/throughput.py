"""OpenSeg inference/training throughput per backend, against the machine's matmul peak and DeepLabV3.

    python benchmarks/throughput.py                                   # reference + tiny, every backend here
    python benchmarks/throughput.py --configs tiny --backends jax --json out.json
    python benchmarks/throughput.py --configs reference --backends jax --breakdown   # per-component profile
    python benchmarks/throughput.py --dtype bfloat16                  # keras mixed precision (GPU/TPU)

Each backend runs in its own interpreter (KERAS_BACKEND is fixed at import) on its default device (a GPU
when the backend sees one, else the CPU). In that interpreter one run measures, in turns so that load drifts
hit every program alike:

- the matmul peak of the backend in `--dtype` (best of a square matmul, before and after the models);
- OpenSeg inference (`OpenSegBackbone`, every output) and one training step of `OpenSegModel`
  (L_G + alpha L_S, SGD with momentum; K=16 caption words, M=32 label masks at image size, the training
  recipe's defaults);
- the image encoder alone, and keras_hub's `DeepLabV3ImageSegmenter` (DeepLabV3+: ASPP on P5, P2 decoder,
  150 classes) on the same encoder at the same size: the closed-vocabulary peer.

Inference runs as the backend's compiled program (JAX jit, TensorFlow XLA; PyTorch eager, Keras' default
there) on inputs already on the device. FLOPs per image come from XLA's cost analysis of the compiled JAX
programs (the same Keras models; on a JAX worker of its own when JAX is not among `--backends`), so every
backend's `mfu = achieved GFLOP/s / matmul peak GFLOP/s` counts the same work.

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
    "infer_images_per_s",
    "train_images_per_s",
    "gflops_per_image",
    "achieved_gflops",
    "matmul_peak_gflops",
    "mfu",
    "encoder_mfu",
    "deeplab_time_ratio",
    "deeplab_mfu",
    "train_mfu",
    "mfu_cputime",
    "encoder_mfu_cputime",
    "deeplab_mfu_cputime",
]
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


def build_models(config):
    """OpenSegModel, keras_hub DeepLabV3+ and a bare encoder, each with its own random encoder."""
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


def measure(config_name, dtype, breakdown, repeats):
    """Runs in the benchmark's per-backend interpreter; returns times, the peak and (JAX) FLOPs."""
    import keras
    from _timing import device_description
    from _timing import interleaved_seconds
    from _timing import load_average
    from _timing import matmul_peak_gflops
    from _timing import set_dtype
    from _timing import sync

    name = keras.backend.backend()
    config = CONFIGS[config_name]
    repeats = repeats or config["repeats"]
    set_dtype(dtype)
    result = {"backend": name, "config": config_name, "dtype": dtype, "device": device_description()}
    result["load_before"] = load_average()
    peaks = [matmul_peak_gflops(dtype, cpu_time=True)]
    model, programs, (images, x, y) = prepare(config)
    start = time.perf_counter()
    for program in programs.values():
        sync(program(images))
    result["compile_seconds"] = time.perf_counter() - start
    timed = interleaved_seconds({k: (lambda p=p: p(images)) for k, p in programs.items()}, repeats=repeats)
    result["seconds"] = {k: v["min"] for k, v in timed.items()}
    result["cpu_seconds"] = {k: v["cpu_min"] for k, v in timed.items()}
    result["all_seconds"] = {k: v["times"] for k, v in timed.items()}

    jit = name != "torch"  # Keras runs torch eagerly unless asked for torch.compile
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=jit)
    # keras.Model's own train_on_batch: keras_hub's PipelineModel override converts `y` with one
    # convert_to_tensor call, which fails on the label dict (fit is unaffected).
    train_step = lambda: keras.Model.train_on_batch(model, x, y)  # noqa: E731
    train = interleaved_seconds({"train": train_step}, repeats=repeats, warmup=2)
    result["seconds"]["train"] = train["train"]["min"]
    result["cpu_seconds"]["train"] = train["train"]["cpu_min"]
    result["all_seconds"]["train"] = train["train"]["times"]
    peaks.append(matmul_peak_gflops(dtype, cpu_time=True))
    result["matmul_peak_gflops"] = max(wall for wall, _ in peaks)
    result["matmul_peak_cpu_gflops"] = max(cpu for _, cpu in peaks)
    result["matmul_peaks"] = [wall for wall, _ in peaks]
    result["batch_size"] = config["batch_size"]

    piece_programs = compiled_pieces(model, images, config) if breakdown else None
    if breakdown:
        timed = interleaved_seconds(
            {piece: (lambda p=p, i=i: p(i)) for piece, (p, i) in piece_programs.items()}, repeats=repeats
        )
        result["piece_seconds"] = {k: v["min"] for k, v in timed.items()}
        result["piece_cpu_seconds"] = {k: v["cpu_min"] for k, v in timed.items()}

    if name == "jax":
        result["flops"] = jax_flops(programs, model, images, x, y, piece_programs)
    result["load_after"] = load_average()
    return result


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
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9))
    keras.Model.train_on_batch(model, x, y)  # builds the optimizer and metric variables
    piece_programs = compiled_pieces(model, images, config) if breakdown else None
    return {"flops": jax_flops(programs, model, images, x, y, piece_programs)}


def prepare(config):
    """The seeded models of `config`, their compiled forward programs and a batch on the device.

    Returns `(model, {"openseg", "deeplab", "encoder": program}, (images, x, y))`.
    """
    import keras
    from _timing import compiled_forward
    from _timing import to_device

    keras.utils.set_random_seed(0)
    model, deeplab, encoder = build_models(config)
    images, x, y = (to_device(part) for part in make_batch(config))
    programs = {
        "openseg": compiled_forward(model.backbone),
        "deeplab": compiled_forward(deeplab),
        "encoder": compiled_forward(encoder),
    }
    return model, programs, (images, x, y)


def compiled_pieces(model, images, config):
    """`{piece: (compiled program, its input)}` for the backbone's components (`breakdown_pieces`), each
    fed the output of the pieces before it."""
    from _timing import compiled_forward
    from _timing import sync

    outputs = {"images": images}
    pieces = {}
    for piece, piece_model, input_from in breakdown_pieces(model.backbone, config["image_size"]):
        program = compiled_forward(piece_model)
        outputs[piece] = sync(program(input_from(outputs)))
        pieces[piece] = (program, input_from(outputs))
    return pieces


def summarize(measured, flops):
    """One table row from a backend's times and the (JAX) FLOPs of the same config."""
    b = measured["batch_size"]
    seconds = measured["seconds"]
    peak = measured["matmul_peak_gflops"]
    row = {
        "backend": measured["backend"],
        "config": measured["config"],
        "dtype": measured["dtype"],
        "device": measured["device"],
        "infer_images_per_s": b / seconds["openseg"],
        "train_images_per_s": b / seconds["train"],
        "matmul_peak_gflops": peak,
        "deeplab_time_ratio": seconds["openseg"] / seconds["deeplab"],
        "encoder_time_ratio": seconds["openseg"] / seconds["encoder"],
        "seconds_per_batch": seconds,
        "matmul_peaks": measured["matmul_peaks"],
        "load_before": measured["load_before"],
        "load_after": measured["load_after"],
        "flops_source": None,
    }
    if flops:

        def gflops(name):
            return flops[name]["flops"] / b / 1e9

        def mfu(name):
            return gflops(name) * b / seconds[name] / peak

        def mfu_cputime(name):
            cpu = measured.get("cpu_seconds", {}).get(name)
            cpu_peak = measured.get("matmul_peak_cpu_gflops")
            return gflops(name) * b / cpu / cpu_peak if cpu and cpu_peak else None

        row.update(
            {
                "flops_source": "xla_cost_analysis(jax)",
                "gflops_per_image": gflops("openseg"),
                "achieved_gflops": gflops("openseg") * b / seconds["openseg"],
                "mfu": mfu("openseg"),
                "encoder_gflops_per_image": gflops("encoder"),
                "encoder_mfu": mfu("encoder"),
                "deeplab_gflops_per_image": gflops("deeplab"),
                "deeplab_mfu": mfu("deeplab"),
                "train_gflops_per_image": gflops("train"),
                "train_mfu": mfu("train"),
                "mfu_cputime": mfu_cputime("openseg"),
                "encoder_mfu_cputime": mfu_cputime("encoder"),
                "deeplab_mfu_cputime": mfu_cputime("deeplab"),
                "train_mfu_cputime": mfu_cputime("train"),
                "openseg_peak_mb_per_batch": flops["openseg"].get("peak_bytes", 0) / 2**20,
                "train_peak_mb_per_batch": flops["train"].get("peak_bytes", 0) / 2**20,
            }
        )
    return row


def breakdown_rows(measured, flops):
    if "piece_seconds" not in measured:
        return []
    b = measured["batch_size"]
    peak = measured["matmul_peak_gflops"]
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
            row["mfu"] = row["achieved_gflops"] / peak
            cpu = measured.get("piece_cpu_seconds", {}).get(piece)
            if cpu and measured.get("matmul_peak_cpu_gflops"):
                row["mfu_cputime"] = piece_flops["flops"] / cpu / 1e9 / measured["matmul_peak_cpu_gflops"]
        rows.append(row)
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="reference,tiny", help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--backends", default="tensorflow,jax,torch", help="comma-separated; missing ones skipped")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per program (default: config's)")
    parser.add_argument("--breakdown", action="store_true", help="also time and count each backbone component")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--_worker", choices=["measure", "flops"], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)}")
    if args._worker:
        (config,) = configs
        if args._worker == "measure":
            result = measure(config, args.dtype, args.breakdown, args.repeats)
        else:
            result = count_flops(config, args.dtype, args.breakdown)
        print("RESULT " + json.dumps(result))
        return 0

    from _timing import backend_available
    from _timing import print_table
    from _timing import run_in_backend

    backends = [b for b in args.backends.split(",") if b]
    missing = [b for b in backends if not backend_available(b)]
    if missing:
        print(f"skipping backends that cannot be imported here: {missing}", file=sys.stderr)
    # JAX first: its worker also returns the FLOPs every row uses.
    backends = sorted((b for b in backends if b not in missing), key=lambda b: b != "jax")

    def worker(backend_name, kind, config):
        flags = ["--configs", config, "--dtype", args.dtype, "--_worker", kind]
        flags += ["--breakdown"] if args.breakdown else []
        flags += ["--repeats", str(args.repeats)] if args.repeats else []
        return run_in_backend(backend_name, os.path.abspath(__file__), flags)

    rows, pieces, raw = [], [], []
    for config in configs:
        measured = [worker(name, "measure", config) for name in backends]
        flops = next((m["flops"] for m in measured if "flops" in m), None)
        if flops is None and backend_available("jax"):
            flops = worker("jax", "flops", config)["flops"]
        for m in measured:
            rows.append(summarize(m, flops))
            pieces.extend(breakdown_rows(m, flops))
            raw.append(dict(m, flops=flops))
        print_table(rows[-len(measured) :], COLUMNS)
    if len(configs) > 1:
        print()
        print_table(rows, COLUMNS)
    if pieces:
        print()
        print_table(pieces, BREAKDOWN_COLUMNS)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "breakdown": pieces, "raw": raw}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
