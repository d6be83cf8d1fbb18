"""The model card: `model_card.md` filled with what training measured, saved as the model's README."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

# Inside the package, so that an installed wheel has it: a link to the project's model_card.md.
TEMPLATE = Path(__file__).resolve().parent / "model_card.md"
REPORTED_METRICS = ("accuracy", "roc_auc", "sensitivity", "specificity", "precision", "f1")
METRIC_NAMES = {
    "accuracy": "Accuracy", "roc_auc": "ROC-AUC", "sensitivity": "Sensitivity (recall)",
    "specificity": "Specificity", "precision": "Precision", "f1": "F1",
}

TEST_NOTE = ("The test split was evaluated once, after training, checkpoint selection and the choice of the "
             "threshold; nothing was selected or tuned on it. It is the result to compare.")


@dataclass
class CardFacts:
    """What a card states; every number comes from the run that produced the model."""

    model_name: str
    base_model: str
    dataset_id: str
    labels: list[str]
    positive_label: str
    threshold: float
    threshold_rule: str
    image_size: str
    command: str
    training_procedure: str
    split_sizes: dict[str, dict[str, int]]
    results: dict[str, dict]  # key -> metrics from `evaluate_model` (its "split" names the split)
    split_rule: str = "with every patient on one side (patient id from the file name)"
    dataset_revision: str | None = None  # the data set's commit, when it came from the Hub
    repo_id: str = "PATH_OR_HUB_ID"
    license: str = "apache-2.0"
    extra_sections: list[str] = field(default_factory=list)
    folded: bool = False  # the decision folded into the classifier: its top logit is the decision
    calibrated: bool = False  # and Platt-scaled probabilities (a fold without calibration has none)
    softmax_threshold: float | None = None  # where the threshold was chosen, before the fold


def build_card(facts: CardFacts) -> ModelCard:
    card_data = ModelCardData(
        model_name=facts.model_name,
        base_model=facts.base_model if not Path(facts.base_model).exists() else None,
        datasets=[facts.dataset_id],
        license=facts.license,
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["vision", "medical-imaging", "chest-x-ray", "pneumonia", "pneumolens"],
        metrics=list(REPORTED_METRICS),
        eval_results=_eval_results(facts) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=facts.model_name,
        labels=" vs ".join(facts.labels),
        base_model=facts.base_model,
        base_model_url=_model_url(facts.base_model),
        dataset_id=facts.dataset_id,
        dataset_revision=f" at revision `{facts.dataset_revision}`" if facts.dataset_revision else "",
        split_rule=facts.split_rule,
        test_note=TEST_NOTE if "test" in facts.results else "",
        image_size=facts.image_size,
        data_table=_data_table(facts.split_sizes, facts.labels),
        training_procedure=facts.training_procedure,
        command=facts.command,
        threshold=f"{facts.threshold:.4f}",
        threshold_rule=facts.threshold_rule,
        positive_label=facts.positive_label,
        threshold_note=threshold_note(facts),
        how_to_decide=how_to_decide(facts.positive_label, facts.folded, facts.calibrated, facts.repo_id),
        results_table=results_table(facts.results),
        extra_sections="\n\n".join(facts.extra_sections),
        repo_id=facts.repo_id,
    )


def threshold_note(facts: CardFacts) -> str:
    if not facts.folded:
        return ""
    if not facts.calibrated:
        return (f" It was chosen at {facts.softmax_threshold:.4f} on the softmax; the classifier's bias is shifted "
                "so that the two logits are equal there, which puts it at 0.5 (no calibration could be fitted).")
    return (f" It was chosen at {facts.softmax_threshold:.4f} on the softmax, before calibration; "
            f"{facts.threshold:.4f} is the same point on the calibrated probability (see Calibration), and the "
            "classifier's bias is shifted so that the two logits are equal there.")


def how_to_decide(positive_label: str, folded: bool, calibrated: bool, repo_id: str) -> str:
    """What the card's "How to use" says of the pipeline's scores and the decision."""
    if not folded:
        return (f"The `pipeline` returns the softmax; to decide, compare the {positive_label} probability with "
                "`classifier.model.config.operating_threshold` (the top label is not the decision).")
    if not calibrated:
        return ("The `pipeline`'s top label is the model's decision: the operating threshold is folded into the "
                "classifier. Its scores are the probabilities the PneumoLens app shows, which are not calibrated.")
    code = "\n".join([
        "```python",
        "import torch",
        "from PIL import Image",
        "from transformers import AutoImageProcessor, AutoModelForImageClassification",
        "",
        f'model = AutoModelForImageClassification.from_pretrained("{repo_id}")',
        f'processor = AutoImageProcessor.from_pretrained("{repo_id}")',
        "with torch.no_grad():",
        '    logits = model(**processor(Image.open("chest_xray.jpeg").convert("RGB"), return_tensors="pt")).logits[0]',
        f'positive = model.config.label2id["{positive_label}"]',
        "calibration = model.config.probability_calibration",
        'probability = torch.sigmoid(calibration["scale"] * (logits[positive] - logits[1 - positive]) + calibration["bias"])',
        "decision = model.config.id2label[int(logits.argmax())]  # the same as probability >= operating_threshold",
        "```",
    ])
    return (
        "The `pipeline`'s top label is the model's decision: the operating threshold is folded into the "
        "classifier, so that the two logits are equal there. Its scores are *decision scores*, 0.5 at the "
        "threshold, not the calibrated probabilities; those, which the PneumoLens app shows, are:\n\n"
        f"{code}\n\n"
        "The app also withholds the decision (\"not a chest radiograph\") where the out-of-distribution "
        "detector saved with the model flags the image; the pipeline has no such check.")


def results_table(results: dict[str, dict]) -> str:
    """A Markdown table: one row per split, one column per metric, plus the confusion matrix."""
    header = "| split | images | " + " | ".join(METRIC_NAMES[m] for m in REPORTED_METRICS) + " | TN / FP / FN / TP |"
    rows = [header, "|" + "---|" * (len(REPORTED_METRICS) + 3)]
    for key, metrics in results.items():
        (tn, fp), (fn, tp) = metrics["confusion_matrix"]
        values = " | ".join(f"{metrics[m]:.4f}" for m in REPORTED_METRICS)
        rows.append(f"| {metrics.get('split', key)} | {tn + fp + fn + tp} | {values} | {tn} / {fp} / {fn} / {tp} |")
    return "\n".join(rows)


def _eval_results(facts: CardFacts) -> list[EvalResult]:
    return [
        EvalResult(
            task_type="image-classification", dataset_type=facts.dataset_id, dataset_name="Kermany chest X-ray",
            dataset_split=key, dataset_revision=facts.dataset_revision,
            metric_type=metric, metric_name=f"{METRIC_NAMES[metric]} ({metrics.get('split', key)})",
            metric_value=round(float(metrics[metric]), 4),
        )
        for key, metrics in facts.results.items()
        for metric in ("accuracy", "roc_auc", "sensitivity", "specificity")
        if metrics[metric] == metrics[metric]  # NaN (one class only) has no place in model-index
    ]


def _data_table(split_sizes: dict[str, dict[str, int]], labels: list[str]) -> str:
    rows = ["| split | " + " | ".join(labels) + " | total |", "|---|" + "---:|" * (len(labels) + 1)]
    for split, counts in split_sizes.items():
        rows.append(f"| {split} | " + " | ".join(str(counts.get(l, 0)) for l in labels) + f" | {sum(counts.values())} |")
    return "\n".join(rows)


def _model_url(name_or_path: str) -> str:
    return name_or_path if Path(name_or_path).exists() else f"https://huggingface.co/{name_or_path}"


def set_card_section(card_path: str | Path, heading: str, body: str, before: str = "## How to use") -> None:
    """Write `## heading` with `body` into a saved card: replace that section if present, else insert it
    before the `before` heading (or at the end). Used for results measured after training."""
    path = Path(card_path)
    text = path.read_text()
    section = f"## {heading}\n\n{body.strip()}\n\n"
    # The heading as a whole line: "### Calibration" is not "## Calibration".
    found = re.search(rf"^## {re.escape(heading)}\n", text, flags=re.MULTILINE)
    start = found.start() if found else -1
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    elif before in text:
        text = text.replace(before, section + before, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def set_card_subsection(card_path: str | Path, parent: str, heading: str, body: str) -> None:
    """Write `### heading` with `body` at the end of the card's `## parent` section, replacing it if present."""
    path = Path(card_path)
    text = path.read_text()
    found = re.search(rf"^## {re.escape(parent)}\n", text, flags=re.MULTILINE)
    if not found:
        raise ValueError(f"The card has no section '{parent}'.")
    end = text.find("\n## ", found.end())
    end = len(text) if end < 0 else end + 1
    section = text[found.start():end]
    sub = f"### {heading}\n\n{body.strip()}\n\n"
    existing = re.search(rf"^### {re.escape(heading)}\n", section, flags=re.MULTILINE)
    if existing:
        stop = re.search(r"^#{2,3} ", section[existing.end():], flags=re.MULTILINE)
        stop_at = existing.end() + stop.start() if stop else len(section)
        section = section[:existing.start()] + sub + section[stop_at:]
    else:
        section = section.rstrip("\n") + "\n\n" + sub
    path.write_text(text[:found.start()] + section + text[end:])
