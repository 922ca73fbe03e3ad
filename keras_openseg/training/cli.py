"""`keras-openseg train`: train an OpenSeg model (or teacher) with `model.fit`.

Settings come from the `TrainingConfig` defaults (the paper's recipe), then `--config FILE` (JSON or YAML),
then the flags given on the command line. For example, on the procedural dataset that needs no download:

    keras-openseg train --dataset openseg_shapes --image-size 128 --steps 2000 --batch-size 16 --output run
    keras-openseg train --output run --resume            # continue a killed run from its last checkpoint
    keras-openseg train --teacher --dataset coco_panoptic_captions --output teacher
"""

import argparse
import os
import sys

from keras_openseg.training.training_config import MIXED_PRECISION
from keras_openseg.training.training_config import OPTIMIZERS

# flag -> (TrainingConfig field, type, help). Every flag defaults to None: "keep the config's value".
_VALUE_FLAGS = {
    "--dataset": ("datasets", str, "tfds dataset name(s), comma-separated, mixed with equal probability"),
    "--data-dir": ("data_dir", str, "tfds data directory"),
    "--split": ("split", str, "split to train on (default train)"),
    "--pseudo-labels": ("pseudo_labels", str, "folder(s) written by `keras-openseg pseudo-label`, comma-separated"),
    "--image-size": ("image_size", int, "side of the square training crops (default 640)"),
    "--steps": ("steps", int, "optimizer steps (default 1000)"),
    "--batch-size": ("batch_size", int, "global batch size (default 8)"),
    "--output": ("output", str, "run folder: checkpoints, logs, config, final preset"),
    "--learning-rate": ("learning_rate", float, "peak learning rate of the cosine schedule (default 0.005)"),
    "--weight-decay": ("weight_decay", float, "weight decay (default 1e-5)"),
    "--warmup-steps": ("warmup_steps", int, "linear warm-up steps (default 5%% of --steps)"),
    "--clip-norm": ("clip_norm", float, "global gradient-norm clipping (default 1.0)"),
    "--keep-prob": ("keep_prob", float, "probability of keeping each caption word (default 0.5)"),
    "--hue-rotation": (
        "hue_rotation",
        float,
        "probability of a random hue rotation per example, its colour words then dropped (default 0: off)",
    ),
    "--alpha": ("alpha", float, "weight of the mask loss in L = L_G + alpha L_S (default 1.0)"),
    "--group-size": ("group_size", int, "explicit contrastive group size of the grounding loss"),
    "--seed": ("seed", int, "seed of the initialization and the input pipeline (default 0)"),
    "--checkpoint-every": ("checkpoint_every", int, "steps between checkpoints (default 500)"),
    "--log-every": ("log_every", int, "steps between TensorBoard scalars (default 50)"),
    "--max-masks": ("max_masks", int, "mask slots per image (default 32)"),
    "--max-words": ("max_words", int, "word slots per caption (default 16)"),
    "--architecture": (
        "architecture",
        str,
        "start from: tiny / small (random, no download), a named architecture, or a preset dir / handle",
    ),
    "--embedding-dim": ("embedding_dim", int, "region-embedding size of a new tiny/small model or teacher"),
    "--text-encoder": ("text_encoder", str, "TextEmbedder preset for the caption words"),
}
_SWITCHES = {
    "--resume": ("resume", "continue from the last checkpoint in --output"),
    "--teacher": ("teacher", "train an OpenSegTeacher: mask loss only, on segmentation data (sec. 3.3)"),
    "--sync-loss": ("sync_loss", "grounding loss over the whole global batch (App. F) instead of per replica"),
    "--freeze-image-encoder": ("freeze_image_encoder", "train the OpenSeg head only"),
}


def add_arguments(parser):
    """Adds the `train` flags to an argparse parser."""
    parser.add_argument("--config", help="JSON or YAML file of TrainingConfig fields (flags override it)")
    for flag, (field, kind, text) in _VALUE_FLAGS.items():
        parser.add_argument(flag, dest=field, type=kind, default=None, help=text)
    parser.add_argument(
        "--distribution",
        choices=("auto", "none", "data_parallel", "mirrored", "tpu"),
        default=None,
        help="auto (default), none, data_parallel (JAX), mirrored or tpu (TensorFlow)",
    )
    parser.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        default=None,
        help="sgd (momentum SGD, the paper's; default) or adamw",
    )
    parser.add_argument(
        "--mixed-precision",
        choices=[value for value in MIXED_PRECISION if value],
        default=None,
        help="compute in bfloat16 or float16 (variables stay float32)",
    )
    for flag, (field, text) in _SWITCHES.items():
        parser.add_argument(flag, dest=field, action="store_true", default=None, help=text)
    return parser


def config_from_args(args):
    """The `TrainingConfig` of parsed arguments: defaults, then `--config`, then the flags given.

    With `--resume` and no `--config`, the run's own `training_config.json` replaces the defaults.
    """
    from keras_openseg.training.training_config import TrainingConfig

    saved = os.path.join(args.output or "", "training_config.json")
    if args.config:
        config = TrainingConfig.from_file(args.config)
    elif args.resume and args.output and os.path.exists(saved):
        config = TrainingConfig.from_file(saved)  # resume the run as it was started
    else:
        config = TrainingConfig()
    fields = [field for field, _, _ in _VALUE_FLAGS.values()] + [field for field, _ in _SWITCHES.values()]
    changes = {field: getattr(args, field) for field in fields + ["distribution", "mixed_precision"]}
    return config.replace(**changes)


def run(args):
    """Runs `keras_openseg.training.train`; returns the exit status."""
    from keras_openseg.training.recipe import train

    config = config_from_args(args)  # bad input raises; keras_openseg.cli reports it as one line, status 2
    from keras_openseg.models.compilation import cpu_backend_advice

    advice = cpu_backend_advice()
    if advice:
        print(f"note: {advice}")  # stdout: stderr carries only the one-line error of bad input
    try:
        train(config)
    except FloatingPointError as error:
        print(f"keras-openseg train: {error}", file=sys.stderr)
        return 1
    print(f"Trained model saved as a preset in {config.output}/preset")
    return 0


if __name__ == "__main__":
    parser = add_arguments(argparse.ArgumentParser(prog="keras-openseg train", description=__doc__.splitlines()[0]))
    sys.exit(run(parser.parse_args()))
