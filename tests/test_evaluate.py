"""evaluate_hf.py: any model on any image folder, without training."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
import torch

import evaluate_hf
import explain as explain_cli
from pneumolens.commands import explain_report
from tests.conftest import REPO, run_main


def evaluate(*args) -> subprocess.CompletedProcess:
    """evaluate_hf.py in this process (`run_main`); its own process is started by the two-process tests."""
    return run_main(evaluate_hf.main, "evaluate_hf.py", *args)


def test_evaluation_writes_metrics_predictions_and_plots(tiny_trained_dirs, real_imagefolder, tmp_path):
    result = evaluate("--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir", real_imagefolder, "--split", "validation",
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
        run = evaluate("--model_name_or_path", directory, "--dataset_name_or_dir", real_imagefolder / "val", "--output_dir", tmp_path / name)
        assert run.returncode == 0, run.stderr[-2000:]
        results[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert results["reversed"]["confusion_matrix"] == results["original"]["confusion_matrix"]
    assert results["reversed"]["roc_auc"] == pytest.approx(results["original"]["roc_auc"], abs=1e-6)


def test_data_without_the_positive_class_is_refused(tiny_trained_dirs, tmp_path, real_images):
    for label in ("CATS", "DOGS"):
        (tmp_path / "pets" / label).mkdir(parents=True)
        shutil.copy(real_images["NORMAL"][0], tmp_path / "pets" / label / "a.jpeg")
    run = evaluate("--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir", tmp_path / "pets", "--output_dir", tmp_path / "o")
    assert run.returncode == 2 and "do not include the model's 'PNEUMONIA'" in run.stderr


def test_several_splits_need_a_choice_and_missing_split_is_named(tiny_trained_dirs, real_imagefolder, tmp_path):
    result = evaluate("--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir", real_imagefolder, "--output_dir", tmp_path)
    assert result.returncode == 2 and "choose one with --split" in result.stderr
    result = evaluate("--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir", real_imagefolder, "--split", "test",
                      "--output_dir", tmp_path)
    assert result.returncode == 2 and "No split 'test'" in result.stderr


def test_evaluation_prints_each_figure_with_its_bootstrap_interval(tiny_trained_dirs, tmp_path):
    from tests.conftest import SHARED_DATA

    data = SHARED_DATA / "chest_xray"  # its validation split: the 16 official validation images
    result = evaluate("--model_name_or_path", tiny_trained_dirs["vit"], "--dataset_name_or_dir", data, "--split", "validation",
                      "--output_dir", tmp_path / "eval", "--bootstrap_samples", "200")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["num_images"] == 16
    for name in ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1"):
        low, high = metrics["intervals"][name]
        assert low <= metrics[name] <= high, name
        assert f"{name:<19} {metrics[name]:.4f}  95 % CI [{low:.4f}, {high:.4f}]" in result.stdout, name


# -- across processes (accelerate launch) -------------------------------------------------------------------

def accelerate_launch(*args) -> subprocess.CompletedProcess:
    """Two processes on the CPU, meeting over gloo. (`--cpu --num_processes 2` would start one: accelerate's
    CPU launcher runs a single process; `--multi_gpu` runs torchrun, which starts both.)"""
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                             "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                             *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.distributed
@pytest.mark.slow
def test_evaluation_across_two_processes_equals_one_process(tiny_trained_dirs, real_imagefolder, tmp_path):
    # One image a batch: a batch of other images sums in another order, and the tiny model's probabilities sit
    # close enough to its threshold that the last bit can change a decision.
    common = ("--model_name_or_path", tiny_trained_dirs["dinov2"], "--dataset_name_or_dir", real_imagefolder,
              "--split", "validation", "--stress", "--batch_size", "1")
    single = evaluate(*common, "--output_dir", tmp_path / "one")
    assert single.returncode == 0, single.stderr[-2000:]
    launched = accelerate_launch("evaluate_hf.py", *common, "--output_dir", tmp_path / "two")
    assert "Process 1 of 2 (cpu" in launched.stderr and "): 4 of 8 items" in launched.stderr
    assert "Process 2 of 2 (cpu" in launched.stderr
    one, two = tmp_path / "one", tmp_path / "two"
    assert json.loads((two / "metrics.json").read_text()) == json.loads((one / "metrics.json").read_text())
    rows = [sorted(csv.DictReader(open(folder / "predictions.csv")), key=lambda row: row["image"]) for folder in (one, two)]
    assert rows[0] == rows[1] and len(rows[0]) == 8
    assert json.loads((two / "stress" / "stress.json").read_text()) == json.loads((one / "stress" / "stress.json").read_text())


class FakeState:
    """Process `index` of `count`, as `accelerate.PartialState` describes it, with no process group."""

    def __init__(self, index: int, count: int):
        self.process_index, self.num_processes, self.device = index, count, "cpu"
        self.is_main_process = index == 0


def run_as_processes(monkeypatch, count: int, run, user) -> None:
    """`run()` once as each of `count` processes, the main one last, with `user`'s `process_state` telling
    each which it is; `gather_object` hands the main one every process's share, as the real gathering does
    (the real launch is the evaluation test's)."""
    from pneumolens import distributed

    shares = []

    def gather(pairs):
        shares.extend(pairs)
        return list(shares)

    monkeypatch.setattr(distributed, "gather_object", gather)
    for index in [*range(1, count), 0]:
        monkeypatch.setattr(user, "process_state", lambda index=index: FakeState(index, count))
        run()


def test_batch_reports_split_between_processes_equal_one_process(tiny_trained_dirs, real_imagefolder, tmp_path,
                                                                monkeypatch):
    images = real_imagefolder / "val"
    (images / "broken.jpeg").write_bytes(b"not an image")  # an error row must survive the gathering too
    common = ["report", str(images), "--model_name_or_path", str(tiny_trained_dirs["vit"])]
    try:
        explain_cli.main([*common, "--out", str(tmp_path / "one")])
        run_as_processes(monkeypatch, 3, lambda: explain_cli.main([*common, "--out", str(tmp_path / "three")]),
                         explain_report)
    finally:
        (images / "broken.jpeg").unlink()
    one, three = tmp_path / "one", tmp_path / "three"
    summaries = [list(csv.DictReader(open(folder / "summary.csv"))) for folder in (one, three)]
    assert summaries[0] == summaries[1] and len(summaries[0]) == 9 and sum(bool(r["error"]) for r in summaries[0]) == 1
    reports = sorted(path.name for path in one.glob("*.html"))
    assert reports == sorted(path.name for path in three.glob("*.html")) and len(reports) == 8
    for name in reports:
        assert _without_date((one / name).read_text()) == _without_date((three / name).read_text()), name


def test_each_process_takes_every_nth_item_and_the_results_come_back_in_order(monkeypatch):
    from pneumolens import distributed

    assert [distributed.my_indices(7, FakeState(index, 3)) for index in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    answers = []

    def run():
        answers.append(distributed.map_in_order(lambda indices: [f"item {i}" for i in indices], 7,
                                                distributed.process_state()))

    run_as_processes(monkeypatch, 3, run, distributed)
    assert answers[-1] == [f"item {i}" for i in range(7)]  # the main process's answer: all, in order


def _without_date(report: str) -> str:
    return "\n".join(line for line in report.splitlines() if "<td>created</td>" not in line)
