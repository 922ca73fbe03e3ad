"""Named OpenSeg architectures: compositions of published keras_hub component presets (data, not code).

No trained OpenSeg weights are published for this package, so every entry is an architecture: a pretrained
image encoder and a pretrained text encoder, both fetched from their own keras_hub / Hugging Face presets,
with the OpenSeg head (FPN fusion, feature heads, mask-query decoder) freshly initialized. Build one with
`OpenSegModel.from_architecture(name)` (or `OpenSegTeacher.from_architecture(name)`), train it, and save it
with `save_to_preset`; trained presets load with `from_preset(path_or_handle)`.

Each entry holds:
    metadata: what a user sees in `OpenSegModel.presets`: `description`, `image_encoder` and `text_encoder`
        (the component handles), `embedding_dim`, and `trained_on` (None: the OpenSeg head is untrained).
    image_encoder: keras_hub preset of a `FeaturePyramidBackbone` (weights and image normalization).
    text_encoder: preset or handle for `keras_openseg.models.TextEmbedder` (None: no text tower).
    backbone: `OpenSegBackbone` arguments (the paper's App. C head sizes unless noted).
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

OPENSEG_ARCHITECTURES = {
    "openseg_resnet50_minilm": {
        "metadata": {
            "description": (
                "OpenSeg head on a ResNet-50 image encoder (ImageNet-1k) with the all-MiniLM-L6-v2 sentence "
                "encoder (384-d embeddings). The head is freshly initialized: train before use."
            ),
            "image_encoder": "resnet_50_imagenet",
            "text_encoder": "hf://sentence-transformers/all-MiniLM-L6-v2",
            "embedding_dim": 384,
            "trained_on": None,
        },
        "image_encoder": "resnet_50_imagenet",
        "text_encoder": "hf://sentence-transformers/all-MiniLM-L6-v2",
        "backbone": {**_PAPER_HEAD, "embedding_dim": 384},
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
}
