"""Captions per second of `CaptionWordExtractor` (spaCy), cold (parsed) and cached (memory, disk).

    python benchmarks/caption_words.py                         # 100k synthetic captions + the real samples
    python benchmarks/caption_words.py --num-captions 5000 --json out.json

Two corpora:

- `coco_sample`: the real COCO val2017 captions in `../shared/data/coco_captions_sample.json` (ten captions;
  the cold figure parses them `--repeats` times with the cache off, so it is a rate, not one batch);
- `synthetic`: `--num-captions` distinct COCO-style captions generated here from a fixed seed (nouns,
  adjectives, verbs, a few multi-word names), parsed once.

Rows: `cold` parses every caption with spaCy (`nlp.pipe`, batched); `memory` asks again for the same captions
(in-memory cache); `disk` is a fresh extractor that reads the words from the JSON-lines cache file the cold
pass wrote, as a second training run does. `--no-ner` adds cold rows without the NER component
(`merge_entities=False`), the cost of keeping multi-word names whole. The pipeline load time is reported apart.
"""

import argparse
import json
import os
import pathlib
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = (
    pathlib.Path(os.environ.get("KERAS_OPENSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "coco_captions_sample.json"
)
COLUMNS = ["corpus", "pass", "settings", "captions", "seconds", "captions_per_s"]

_SUBJECTS = ["man", "woman", "child", "dog", "cat", "horse", "bird", "person", "boy", "girl", "group of people"]
_OBJECTS = [
    "table",
    "bench",
    "street",
    "kitchen",
    "bus",
    "train",
    "motorcycle",
    "pizza",
    "frisbee",
    "umbrella",
    "toilet",
    "laptop",
    "sofa",
    "field",
    "beach",
    "window",
    "bicycle",
    "sign",
    "tree",
    "building",
    "plate",
    "clock",
]
_ADJECTIVES = ["black", "white", "red", "small", "large", "old", "young", "wooden", "busy", "empty", "green"]
_VERBS = ["sitting on", "standing next to", "riding", "holding", "looking at", "walking past", "lying on"]
_PLACES = ["New York City", "the Golden Gate Bridge", "Central Park", "the Eiffel Tower", "a city street"]


def synthetic_captions(count, seed=0):
    """`count` distinct COCO-style captions from a fixed seed."""
    rng = random.Random(seed)
    captions = []
    for index in range(count):
        caption = (
            f"A {rng.choice(_ADJECTIVES)} {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} "
            f"a {rng.choice(_ADJECTIVES)} {rng.choice(_OBJECTS)}"
        )
        if rng.random() < 0.3:
            caption += f" near {rng.choice(_PLACES)}"
        if rng.random() < 0.5:
            caption += f" with {rng.randint(2, 9)} {rng.choice(_OBJECTS)}s"
        # A distinct ending keeps every caption a cache miss on the cold pass.
        captions.append(f"{caption}, photo {index}.")
    return captions


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def row(corpus, name, settings, count, seconds):
    return {
        "corpus": corpus,
        "pass": name,
        "settings": settings,
        "captions": count,
        "seconds": seconds,
        "captions_per_s": count / seconds if seconds > 0 else None,
    }


def bench_corpus(corpus, captions, args, cache_dir, repeats=1):
    from keras_openseg.text import CaptionWordExtractor

    rows = []
    settings = f"{args.pos}, batch {args.batch_size}, n_process {args.n_process}"
    cold = CaptionWordExtractor(
        args.spacy_model, pos=args.pos, batch_size=args.batch_size, cache=cache_dir, n_process=args.n_process
    )
    _, load_seconds = timed(lambda: cold.nlp)
    if repeats > 1:  # A handful of captions: parse them repeatedly with the cache off to get a rate.
        uncached = CaptionWordExtractor(cold.nlp, pos=args.pos, batch_size=args.batch_size, cache=False)
        _, seconds = timed(lambda: [uncached.extract(captions) for _ in range(repeats)])
        rows.append(row(corpus, "cold", settings, len(captions) * repeats, seconds))
        cold.extract(captions)  # Fills the caches for the rows below.
    else:
        _, seconds = timed(lambda: cold.extract(captions))
        rows.append(row(corpus, "cold", settings, len(captions), seconds))
    memory_repeats = max(1, repeats)
    _, seconds = timed(lambda: [cold.extract(captions) for _ in range(memory_repeats)])
    rows.append(row(corpus, "memory", settings, len(captions) * memory_repeats, seconds))
    disk = CaptionWordExtractor(cold.nlp, pos=args.pos, batch_size=args.batch_size, cache=cache_dir)
    _, seconds = timed(lambda: disk.extract(captions))
    assert disk.parsed_count == 0, "the disk cache missed"
    rows.append(row(corpus, "disk", settings + " (file read included)", len(captions), seconds))
    if args.no_ner:
        plain = CaptionWordExtractor(
            args.spacy_model,
            pos=args.pos,
            batch_size=args.batch_size,
            cache=False,
            merge_entities=False,
            n_process=args.n_process,
        )
        _ = plain.nlp  # load the pipeline before timing
        _, seconds = timed(lambda: [plain.extract(captions) for _ in range(repeats)])
        rows.append(row(corpus, "cold", settings + ", no NER", len(captions) * repeats, seconds))
    return rows, load_seconds


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-captions", type=int, default=100_000, help="synthetic corpus size")
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES), help="coco_captions_sample.json")
    parser.add_argument("--repeats", type=int, default=30, help="cold passes over the ten real captions")
    parser.add_argument("--spacy-model", default="en_core_web_sm")
    parser.add_argument("--pos", default="noun+adj")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-process", type=int, default=1)
    parser.add_argument("--no-ner", action="store_true", help="also time cold parsing without NER")
    parser.add_argument("--json", help="write the rows as JSON here")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from _timing import print_table

    rows = []
    load_seconds = None
    with tempfile.TemporaryDirectory() as cache_root:
        samples = pathlib.Path(args.samples)
        if samples.exists():
            annotations = json.loads(samples.read_text())["annotations"]
            captions = [annotation["caption"] for annotation in annotations]
            sample_rows, load_seconds = bench_corpus(
                "coco_sample", captions, args, os.path.join(cache_root, "sample"), repeats=args.repeats
            )
            rows += sample_rows
        else:
            print(f"(no real samples at {samples}; skipping that corpus)")
        if args.num_captions > 0:
            synthetic_rows, synthetic_load = bench_corpus(
                "synthetic", synthetic_captions(args.num_captions), args, os.path.join(cache_root, "synthetic")
            )
            rows += synthetic_rows
            load_seconds = load_seconds if load_seconds is not None else synthetic_load
    print(f"spaCy pipeline load: {load_seconds:.2f} s (not in the rows)")
    print_table(rows, COLUMNS)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"pipeline_load_seconds": load_seconds, "rows": rows}, file, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
