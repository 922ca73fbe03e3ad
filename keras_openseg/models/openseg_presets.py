"""Named OpenSeg architectures: data, not code. Each is built by `OpenSegBackbone.from_architecture(name)`
(the network) or by a task's `from_architecture(name)` (network, image converter and, for `OpenSegModel`, the
text encoder).

No trained OpenSeg weights are published for this package, so every entry is an untrained architecture,
listed by `OpenSegModel.architectures` (`OpenSegModel.presets` lists what `from_preset` loads: nothing built
in). Two kinds:

- paper-scale: a pretrained image encoder and text encoder, each fetched from its own keras_hub / Hugging
  Face preset, with the OpenSeg head (FPN fusion, feature heads, mask-query decoder) freshly initialized;
- small: a random-init keras_hub ResNet that needs no download, for the demo (`demo`, `quick`), training
  tests and benchmarks (`tiny`, `small`) and the unit tests (`test_tiny`).

Train one, save it with `save_to_preset`, and load it with `from_preset(path_or_handle)`.

Each entry holds:
    metadata: what `architectures` shows: `description`, `image_encoder` and `text_encoder` (the component
        handles, None for none), `embedding_dim`, and `trained_on` (None: the OpenSeg head is untrained).
    image_encoder: a keras_hub preset handle of a `FeaturePyramidBackbone` (weights and normalization), or a
        dict `{"class_name": <keras_hub.models class>, "config": <its constructor arguments>}` for a
        random-init encoder.
    image_normalization: `OpenSegImageConverter` `scale` and `offset` of a random-init encoder (a preset
        handle brings its own).
    text_encoder: preset or handle for `keras_openseg.models.TextEmbedder` (None: no text tower).
    backbone: `OpenSegBackbone` arguments.
    task: optional `OpenSegModel` / `OpenSegTeacher` arguments shared by both (e.g. `matching`).
"""

# The paper's head (App. C): 128 queries, 640-d features, 3 decoder layers, F_s / F_z heads of 1 fc + 3 convs.
_PAPER_HEAD = {
    "num_queries": 128,
    "hidden_dim": 640,
    "decoder_layers": 3,
    "decoder_heads": 8,
    "head_convs": 3,
    "position_grid": (160, 160),
}

# Random-init encoders map 0..255 pixels to -1..1.
_SYMMETRIC = {"scale": 1 / 127.5, "offset": -1.0}

# all-MiniLM-L6-v2's embedding size: the default text encoder of training runs and of the demo.
_MINILM_DIM = 384


def _resnet(filters, kernel_size, stack_filters, block_type, **extra):
    """A keras_hub `ResNetBackbone` config with one block per stack (its first stack needs 64 filters)."""
    config = {
        "input_conv_filters": [filters],
        "input_conv_kernel_sizes": [kernel_size],
        "stackwise_num_filters": stack_filters,
        "stackwise_num_blocks": [1, 1, 1, 1],
        "stackwise_num_strides": [1, 2, 2, 2],
        "block_type": block_type,
        **extra,
    }
    return {"class_name": "ResNetBackbone", "config": config}


def _head(
    num_queries, hidden_dim, decoder_layers, decoder_heads, head_convs, grid, embedding_dim=_MINILM_DIM, **options
):
    """`OpenSegBackbone` arguments of a small head (the position table at the training images' stride-4 size)."""
    return {
        "num_queries": num_queries,
        "hidden_dim": hidden_dim,
        "embedding_dim": embedding_dim,
        "decoder_layers": decoder_layers,
        "decoder_heads": decoder_heads,
        "head_convs": head_convs,
        "position_grid": (grid, grid),
        **options,
    }


def _small(description, image_encoder, backbone, task=None):
    """A random-init architecture: no download, 0..255 pixels mapped to -1..1, no text encoder of its own."""
    entry = {
        "metadata": {
            "description": description,
            "image_encoder": None,
            "text_encoder": None,
            "embedding_dim": backbone["embedding_dim"],
            "trained_on": None,
        },
        "image_encoder": image_encoder,
        "image_normalization": _SYMMETRIC,
        "text_encoder": None,
        "backbone": backbone,
    }
    if task:
        entry["task"] = task
    return entry


# The demo's options beyond the paper make a small model learn masks in few steps: one-to-one matching in the
# dice loss, query self-attention and a sine/cosine start for the position embedding; and region embeddings
# pooled with stop-gradient masks (`region_mask_gradient=False`): otherwise the grounding loss bends the masks
# (the student's dice loss rose from 0.21 to 0.35 and recall@0.5 fell from 0.85 to 0.54 in 1200 steps).
_DEMO_OPTIONS = {"self_attention": True, "position_initializer": "sincos", "region_mask_gradient": False}

OPENSEG_ARCHITECTURES = {
    "openseg_resnet50_minilm": {
        "metadata": {
            "description": (
                "OpenSeg head on a ResNet-50 image encoder (ImageNet-1k) with the all-MiniLM-L6-v2 sentence "
                "encoder (384-d embeddings). The head is freshly initialized: train before use."
            ),
            "image_encoder": "resnet_50_imagenet",
            "text_encoder": "hf://sentence-transformers/all-MiniLM-L6-v2",
            "embedding_dim": _MINILM_DIM,
            "trained_on": None,
        },
        "image_encoder": "resnet_50_imagenet",
        "text_encoder": "hf://sentence-transformers/all-MiniLM-L6-v2",
        "backbone": {**_PAPER_HEAD, "embedding_dim": _MINILM_DIM},
    },
    "openseg_efficientnet_b5_clip_l14": {
        "metadata": {
            "description": (
                "OpenSeg head on an EfficientNet-B5 image encoder (ImageNet-12k, fine-tuned on 1k) with the "
                "CLIP ViT-L/14 text tower (768-d embeddings), the closest keras_hub match to the paper's "
                "EfficientNet-B7 + ALIGN setup. The head is freshly initialized: train before use."
            ),
            "image_encoder": "efficientnet_b5_sw_ft_imagenet",
            "text_encoder": "clip_vit_large_patch14",
            "embedding_dim": 768,
            "trained_on": None,
        },
        "image_encoder": "efficientnet_b5_sw_ft_imagenet",
        "text_encoder": "clip_vit_large_patch14",
        "backbone": {**_PAPER_HEAD, "embedding_dim": 768},
    },
    "tiny": _small(
        "Random-init ResNet (no download) with an 8-query head: training tests and benchmarks.",
        _resnet(64, 3, [64, 16, 16, 16], "basic_block"),
        _head(num_queries=8, hidden_dim=16, decoder_layers=1, decoder_heads=2, head_convs=1, grid=16),
    ),
    "small": _small(
        "Random-init ResNet (no download) with a 32-query head: short training runs on openseg_shapes.",
        _resnet(64, 7, [64, 64, 128, 128], "basic_block"),
        _head(num_queries=32, hidden_dim=64, decoder_layers=2, decoder_heads=4, head_convs=2, grid=32),
    ),
    "demo": _small(
        "The quick-start demo's model (`keras-openseg demo`): random-init ResNet, 16 queries, the options "
        "beyond the paper that make a small model learn masks in few steps.",
        _resnet(16, 3, [64, 32, 64, 128], "basic_block_vd"),
        _head(num_queries=16, hidden_dim=64, decoder_layers=2, decoder_heads=4, head_convs=1, grid=24, **_DEMO_OPTIONS),
        task={"matching": "one_to_one"},
    ),
    "quick": _small(
        "The demo's smoke-test model (`keras-openseg demo --quick`).",
        _resnet(16, 3, [64, 16, 16, 16], "basic_block_vd"),
        _head(num_queries=8, hidden_dim=16, decoder_layers=1, decoder_heads=2, head_convs=1, grid=16, **_DEMO_OPTIONS),
        task={"matching": "one_to_one"},
    ),
    "test_tiny": _small(
        "The unit tests' model: a ResNet of ~50k weights, 6 queries, 8-d embeddings.",
        _resnet(8, 3, [64, 8, 8, 8], "basic_block_vd", use_pre_activation=False),
        _head(num_queries=6, hidden_dim=16, decoder_layers=1, decoder_heads=2, head_convs=1, grid=16, embedding_dim=8),
    ),
}
