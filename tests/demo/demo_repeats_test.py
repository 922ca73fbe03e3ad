"""`keras-openseg demo --seed N --repeats K`: one seeded run per seed, and every metric's mean and spread."""

import argparse
import json
import os

import numpy as np
import pytest

from keras_openseg import demo


def _parse(argv):
    return demo.add_arguments(argparse.ArgumentParser()).parse_args(argv)


def fake_summary(seed, miou, baseline_miou):
    return {
        "seed": seed,
        "miou": miou,
        "grounding_miou": miou + 0.1,
        "recall@0.5": 0.8,
        "min_class_iou": miou / 2,
        "baseline_miou": baseline_miou,
        "miou_gain": miou - baseline_miou,
        "synonym_ratio": None,  # no ratio in any run: left out
        "per_class_iou": {"circle": miou / 2, "sky": 0.9, "hexagon": None},
        "wall_seconds": 100.0,
    }


def test_seed_and_repeats_flags():
    args = _parse([])
    assert (args.seed, args.repeats) == (demo.DEFAULT_SEED, 1)
    args = _parse(["--seed", "7", "--repeats", "3"])
    assert (args.seed, args.repeats) == (7, 3)


def test_statistics_are_the_mean_and_sample_std_over_seeds():
    mious, baselines = [0.40, 0.46, 0.43], [0.35, 0.47, 0.36]
    summaries = [fake_summary(seed, m, b) for seed, m, b in zip([3, 4, 5], mious, baselines, strict=True)]
    stats = demo.summarize_repeats(summaries)
    assert stats["seeds"] == [3, 4, 5]
    assert stats["metrics"]["miou"]["mean"] == pytest.approx(np.mean(mious))
    assert stats["metrics"]["miou"]["std"] == pytest.approx(np.std(mious, ddof=1))
    assert stats["metrics"]["miou"]["values"] == pytest.approx(mious)
    gains = np.subtract(mious, baselines)
    assert stats["metrics"]["miou_gain"]["std"] == pytest.approx(np.std(gains, ddof=1))
    assert "synonym_ratio" not in stats["metrics"]
    assert stats["per_class_iou"]["circle"]["mean"] == pytest.approx(np.mean(mious) / 2)
    assert stats["per_class_iou"]["hexagon"] is None

    table = demo.format_repeats(stats)
    # One run's gain is negative: the claim that OpenSeg beats the baseline is not supported by these runs.
    assert "NOT shown" in table and "seeds [3, 4, 5]" in table
    assert "0.430" in table  # the mean mIoU


def test_a_gain_larger_than_the_spread_is_reported_as_shown():
    summaries = [fake_summary(seed, 0.45 + 0.01 * seed, 0.35) for seed in range(3)]
    table = demo.format_repeats(demo.summarize_repeats(summaries))
    assert "by more than the seeds' spread" in table and "NOT shown" not in table


def test_repeats_run_one_seeded_demo_per_seed(tmp_path, monkeypatch):
    runs = []

    def fake_run(self):
        runs.append((self.seed, self.output))
        return fake_summary(self.seed, 0.4 + 0.01 * self.seed, 0.3)

    monkeypatch.setattr(demo._Demo, "run", fake_run)
    monkeypatch.setattr(demo, "format_summary", lambda summary: "")
    output = tmp_path / "out"
    assert demo.run(_parse(["--quick", "--seed", "2", "--repeats", "2", "--output", str(output)])) == 0
    assert runs == [(2, os.path.abspath(output / "seed-2")), (3, os.path.abspath(output / "seed-3"))]
    stats = json.loads((output / "repeats.json").read_text())
    assert stats["seeds"] == [2, 3]
    assert stats["metrics"]["miou"]["mean"] == pytest.approx(0.425)

    with pytest.raises(ValueError, match="--repeats"):
        demo.run(_parse(["--quick", "--repeats", "0", "--output", str(output)]))
