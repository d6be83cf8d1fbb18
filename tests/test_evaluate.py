"""evaluate_hf.py: any model on any image folder, without training."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


def evaluate(*args, cwd=REPO):
    return subprocess.run([sys.executable, "evaluate_hf.py", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_evaluation_writes_metrics_predictions_and_plots(tiny_trained_dirs, real_imagefolder, tmp_path):
    result = evaluate("--model", tiny_trained_dirs["vit"], "--data_dir", real_imagefolder, "--split", "validation",
                      "--output_dir", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert metrics["num_images"] == len(rows) == 8
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    threshold = json.loads((tiny_trained_dirs["vit"] / "config.json").read_text())["operating_threshold"]
    assert metrics["threshold"] == pytest.approx(threshold)
    predicted_positive = sum(float(r["p_PNEUMONIA"]) >= threshold for r in rows)
    assert tp + fp == predicted_positive and sum(r["predicted"] == "PNEUMONIA" for r in rows) == predicted_positive
    assert sum(r["label"] == "PNEUMONIA" for r in rows) == tp + fn
    for plot in ("roc_curve.png", "confusion_matrix.png"):
        assert (tmp_path / "eval" / plot).stat().st_size > 1000


def test_class_folders_are_matched_by_name_not_order(tiny_trained_dirs, real_imagefolder, tmp_path):
    """A model whose label indices are the other way round scores the same folder identically."""
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tiny_trained_dirs["vit"])
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label = {0: "PNEUMONIA", 1: "NORMAL"}
    model.config.label2id = {"PNEUMONIA": 0, "NORMAL": 1}
    model.save_pretrained(tmp_path / "reversed")
    shutil.copy(tiny_trained_dirs["vit"] / "preprocessor_config.json", tmp_path / "reversed")

    results = {}
    for name, directory in (("original", tiny_trained_dirs["vit"]), ("reversed", tmp_path / "reversed")):
        run = evaluate("--model", directory, "--data_dir", real_imagefolder / "val", "--output_dir", tmp_path / name)
        assert run.returncode == 0, run.stderr[-2000:]
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert results["reversed"]["confusion_matrix"] == results["original"]["confusion_matrix"]
    assert results["reversed"]["roc_auc"] == pytest.approx(results["original"]["roc_auc"], abs=1e-6)


def test_data_without_the_positive_class_is_refused(tiny_trained_dirs, tmp_path, real_images):
    for label in ("CATS", "DOGS"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        shutil.copy(real_images["NORMAL"][0], tmp_path / "pets" / label / "a.jpeg")
    run = evaluate("--model", tiny_trained_dirs["vit"], "--data_dir", tmp_path / "pets", "--output_dir", tmp_path / "o")
    assert run.returncode == 2 and "do not include the model's 'PNEUMONIA'" in run.stderr


def test_several_splits_need_a_choice_and_missing_split_is_named(tiny_trained_dirs, real_imagefolder, tmp_path):
    result = evaluate("--model", tiny_trained_dirs["vit"], "--data_dir", real_imagefolder, "--output_dir", tmp_path)
    assert result.returncode == 2 and "choose one with --split" in result.stderr
    result = evaluate("--model", tiny_trained_dirs["vit"], "--data_dir", real_imagefolder, "--split", "test",
                      "--output_dir", tmp_path)
    assert result.returncode == 2 and "No split 'test'" in result.stderr
