import math
import os

import numpy as np
import pytest
from transformers import EvalPrediction

from pneumolens.metrics import binary_metrics, trainer_metrics, youden_threshold

# 10 cases worked out by hand at threshold 0.5:
# labels  1    1    1    1    0    0    0    0    0    1
# scores .9   .8   .4   .6   .3   .7   .1   .2   .45  .55
# TP = 4 (.9 .8 .6 .55), FN = 1 (.4), FP = 1 (.7), TN = 4 (.3 .1 .2 .45)
LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
SCORES = [0.9, 0.8, 0.4, 0.6, 0.3, 0.7, 0.1, 0.2, 0.45, 0.55]


def test_binary_metrics_match_hand_computation():
    metrics = binary_metrics(LABELS, SCORES, threshold=0.5)
    assert metrics["confusion_matrix"] == [[4, 1], [1, 4]]
    assert metrics["accuracy"] == pytest.approx(8 / 10)
    assert metrics["precision"] == pytest.approx(4 / 5)
    assert metrics["sensitivity"] == pytest.approx(4 / 5)
    assert metrics["specificity"] == pytest.approx(4 / 5)
    assert metrics["f1"] == pytest.approx(0.8)
    # AUC: of the 25 positive/negative pairs, the positive scores higher in all but
    # (.4 vs .7), (.4 vs .45), (.55 vs .7), (.6 vs .7) -> 21/25.
    assert metrics["roc_auc"] == pytest.approx(21 / 25)


def test_threshold_changes_the_decision_not_the_auc():
    strict = binary_metrics(LABELS, SCORES, threshold=0.85)
    assert strict["confusion_matrix"] == [[5, 0], [4, 1]]
    assert strict["specificity"] == 1.0 and strict["sensitivity"] == pytest.approx(0.2)
    assert strict["roc_auc"] == pytest.approx(21 / 25)


def test_one_class_gives_nan_auc_and_zero_for_empty_ratios():
    metrics = binary_metrics([0, 0, 0], [0.1, 0.7, 0.2])
    assert math.isnan(metrics["roc_auc"])
    assert metrics["sensitivity"] == 0.0 and metrics["precision"] == 0.0
    assert metrics["specificity"] == pytest.approx(2 / 3)


def test_youden_threshold_separates_perfectly_separable_scores():
    threshold = youden_threshold([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9])
    assert 0.3 < threshold <= 0.6
    metrics = binary_metrics([0, 0, 1, 1], [0.1, 0.3, 0.6, 0.9], threshold)
    assert metrics["accuracy"] == 1.0


def test_youden_threshold_maximises_j_on_hand_example():
    # J at ">= .55": sens 4/5, spec 4/5 -> .6; at ">= .4": sens 5/5, spec 3/5 -> .6;
    # at ">= .6": 3/5 + 4/5 - 1 = .4; at ">= .8": .4. Best J is .6, in (.3, .4] or (.45, .55].
    threshold = youden_threshold(LABELS, SCORES)
    assert 0.3 < threshold <= 0.4 or 0.45 < threshold <= 0.55
    metrics = binary_metrics(LABELS, SCORES, threshold)
    assert metrics["sensitivity"] + metrics["specificity"] - 1 == pytest.approx(0.6)


def test_trainer_metrics_uses_the_positive_index_and_flattens_the_matrix():
    # Two-class logits where class 0 is the positive one: softmax(l)[0] = sigmoid(l0 - l1).
    scores = np.array(SCORES)
    logits = np.stack([np.log(scores), np.log(1 - scores)], axis=1)
    labels = np.array([0 if y == 1 else 1 for y in LABELS])
    metrics = trainer_metrics(positive_index=0)(EvalPrediction(predictions=logits, label_ids=labels))
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (4, 1, 1, 4)
    assert metrics["roc_auc"] == pytest.approx(21 / 25)
    assert all(not isinstance(v, list) for v in metrics.values())


def test_youden_threshold_names_the_one_class_problem():
    with pytest.raises(ValueError, match="both classes"):
        youden_threshold([1, 1, 1], [0.2, 0.5, 0.9])


def test_the_evaluate_module_loads_offline_from_its_folder_and_agrees_with_scikit_learn():
    import evaluate
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    from pneumolens.metrics import METRIC_MODULE

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    metric = evaluate.load(str(METRIC_MODULE), keep_in_memory=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    threshold = 0.6
    decided = (scores >= threshold).astype(int)
    result = metric.compute(references=labels, predictions=scores, threshold=threshold)
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, decided))
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["sensitivity"] == pytest.approx(recall_score(labels, decided))
    assert result["specificity"] == pytest.approx(recall_score(labels, decided, pos_label=0))
    assert result["precision"] == pytest.approx(precision_score(labels, decided))
    assert result["f1"] == pytest.approx(f1_score(labels, decided))


def test_bootstrap_intervals_hold_the_estimate_narrow_with_more_images_and_repeat_with_the_seed():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    scores = np.clip(labels * 0.4 + rng.random(2000) * 0.6, 0, 1)
    few = binary_metrics(labels[:100], scores[:100], 0.5, bootstrap_samples=300, seed=3)
    many = binary_metrics(labels, scores, 0.5, bootstrap_samples=300, seed=3)
    for name in ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1"):
        low, high = few["intervals"][name]
        assert low <= few[name] <= high and low < high, name
        assert many["intervals"][name][1] - many["intervals"][name][0] < high - low, name
    assert binary_metrics(labels[:100], scores[:100], 0.5, bootstrap_samples=300, seed=3)["intervals"] == few["intervals"]
    assert "intervals" not in binary_metrics(labels, scores, 0.5)
