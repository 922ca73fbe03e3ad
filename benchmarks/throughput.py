"""OpenSeg inference/training throughput per backend, against the machine's matmul peak and DeepLabV3.

    python benchmarks/throughput.py                       # reference config, tensorflow + jax + torch
    python benchmarks/throughput.py --config tiny --backends jax --json out.json

Each backend runs in its own interpreter (KERAS_BACKEND is fixed at import). In that interpreter the
same run measures: the float32 matmul peak, OpenSeg inference and training images/s, and keras_hub's
DeepLabV3+ on the same image encoder at the same size (the closed-vocabulary peer). FLOPs per image come
from XLA's cost analysis of the compiled JAX program (one extra JAX interpreter), and are the same program
on every backend. `mfu = achieved GFLOP/s / matmul peak GFLOP/s`.

The reference config is the one the performance issue fixes: a ResNet-50-size keras_hub encoder
(random weights; no download), 512x512, N=128 queries, hidden 256, embedding 512, batch 4.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CONFIGS = {
    "reference": dict(
        encoder="resnet50", image_size=512, num_queries=128, hidden_dim=256, embedding_dim=512, batch_size=4,
        repeats=3,
    ),
    "tiny": dict(
        encoder="tiny", image_size=128, num_queries=16, hidden_dim=32, embedding_dim=32, batch_size=2,
        repeats=5,
    ),
}
COLUMNS = [
    "backend", "config", "infer_images_per_s", "train_images_per_s", "gflops_per_image", "achieved_gflops",
    "matmul_peak_gflops", "mfu", "deeplab_time_ratio", "deeplab_mfu",
]


def image_encoder(kind):
    import keras_hub

    if kind == "resnet50":
        return keras_hub.models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
            stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        )
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[16], input_conv_kernel_sizes=[3], stackwise_num_filters=[16, 32, 64, 64],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2], block_type="basic_block",
    )


def build_models(config):
    import keras_hub

    from keras_openseg.models import OpenSegBackbone
    from keras_openseg.models import OpenSegModel

    backbone = OpenSegBackbone(
        image_encoder=image_encoder(config["encoder"]), num_queries=config["num_queries"],
        hidden_dim=config["hidden_dim"], embedding_dim=config["embedding_dim"],
    )
    model = OpenSegModel(backbone=backbone)
    deeplab = keras_hub.models.DeepLabV3ImageSegmenter(
        backbone=keras_hub.models.DeepLabV3Backbone(
            image_encoder=image_encoder(config["encoder"]), spatial_pyramid_pooling_key="P5",
            upsampling_size=8, dilation_rates=[6, 12, 18], low_level_feature_key="P2",
        ),
        num_classes=150,
    )
    return model, deeplab


def batch(config, embedding_dim):
    import numpy as np

    rng = np.random.default_rng(0)
    b, s = config["batch_size"], config["image_size"]
    images = rng.uniform(0, 255, (b, s, s, 3)).astype("float32")
    x = {
        "images": images,
        "word_embeddings": rng.standard_normal((b, 8, embedding_dim)).astype("float32"),
        "word_valid": np.ones((b, 8), bool),
    }
    y = {"masks": (rng.uniform(size=(b, 8, s, s)) > 0.5).astype("float32"), "mask_valid": np.ones((b, 8), bool)}
    return images, x, y


def measure(config_name):
    """Runs in the benchmark's per-backend interpreter."""
    import keras
    from _timing import matmul_peak_gflops
    from _timing import median_seconds

    config = CONFIGS[config_name]
    keras.utils.set_random_seed(0)
    jit = keras.backend.backend() != "torch"  # torch.compile is not the default path for Keras on torch
    peak = matmul_peak_gflops()
    model, deeplab = build_models(config)
    images, x, y = batch(config, config["embedding_dim"])
    backbone = model.backbone
    backbone.compile(jit_compile=jit)
    deeplab.compile(jit_compile=jit)
    repeats = config["repeats"]
    infer = median_seconds(lambda: backbone.predict_on_batch(images), repeats=repeats)
    deeplab_infer = median_seconds(lambda: deeplab.predict_on_batch(images), repeats=repeats)
    model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9), jit_compile=jit)
    train = median_seconds(lambda: model.train_on_batch(x, y), repeats=repeats)
    return {
        "backend": keras.backend.backend(), "config": config_name, "matmul_peak_gflops": peak,
        "infer_seconds": infer, "train_seconds": train, "deeplab_seconds": deeplab_infer,
        "batch_size": config["batch_size"],
    }


def count_flops(config_name):
    """Runs in a JAX interpreter: XLA cost analysis of OpenSeg's and DeepLabV3's inference programs."""
    from _timing import jax_flops

    config = CONFIGS[config_name]
    model, deeplab = build_models(config)
    images, _, _ = batch(config, config["embedding_dim"])
    b = config["batch_size"]
    return {"openseg": jax_flops(model.backbone, images) / b, "deeplab": jax_flops(deeplab, images) / b}


def summarize(measured, flops):
    b = measured["batch_size"]
    achieved = flops["openseg"] * b / measured["infer_seconds"] / 1e9
    deeplab_achieved = flops["deeplab"] * b / measured["deeplab_seconds"] / 1e9
    peak = measured["matmul_peak_gflops"]
    return {
        "backend": measured["backend"], "config": measured["config"],
        "infer_images_per_s": b / measured["infer_seconds"], "train_images_per_s": b / measured["train_seconds"],
        "gflops_per_image": flops["openseg"] / 1e9, "achieved_gflops": achieved, "matmul_peak_gflops": peak,
        "mfu": achieved / peak, "deeplab_time_ratio": measured["infer_seconds"] / measured["deeplab_seconds"],
        "deeplab_mfu": deeplab_achieved / peak, "deeplab_gflops_per_image": flops["deeplab"] / 1e9,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="reference")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--json", help="write the rows as JSON here")
    parser.add_argument("--_worker", choices=["measure", "flops"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        result = measure(args.config) if args._worker == "measure" else count_flops(args.config)
        print("RESULT " + json.dumps(result))
        return
    from _timing import print_table
    from _timing import run_in_backend

    def worker(backend_name, kind):
        out = run_in_backend(backend_name, __file__, ["--config", args.config, "--_worker", kind])
        return json.loads(out.rsplit("RESULT ", 1)[1])

    flops = worker("jax", "flops")
    rows = [summarize(worker(name, "measure"), flops) for name in args.backends.split(",")]
    print_table(rows, COLUMNS)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
