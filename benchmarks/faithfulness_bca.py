"""The faithfulness verdicts' intervals, percentile bootstrap (before 0.7.1) against BCa (now), side by side, from a
model's stored per-image scores (no model run: the scores are the same 100 validation images either way).

    python -m benchmarks.faithfulness_bca                      # the bundled model
    python -m benchmarks.faithfulness_bca MODEL_DIR --write    # store the BCa summary and the card's section

Prints, per subset (all images, the correctly classified ones), method and curve, the low end of each interval
against the method's own random baseline (the verdict hangs on it), then every verdict and the ranking under
both. `--write` replaces the file's summary (its per-image scores are kept byte for byte) and rewrites the
card's "Explanations: faithfulness" section with the same data description and command it had.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from pneumolens.card import set_card_section
from pneumolens.explain import TITLES
from pneumolens.explain.faithfulness import FaithfulnessReport, faithfulness_markdown, percentile_interval
from pneumolens.explain.standing import FAITHFULNESS_FILE
from pneumolens.modeling import BUNDLED_MODEL

CARD_HEADING = "Explanations: faithfulness"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", nargs="?", default=str(BUNDLED_MODEL))
    parser.add_argument("--write", action="store_true", help="Store the BCa summary and rewrite the card's section.")
    args = parser.parse_args()
    path = Path(args.model_dir) / FAITHFULNESS_FILE
    stored = json.loads(path.read_text())
    report = FaithfulnessReport.from_json(stored)
    before, after = report.summary(interval=percentile_interval), report.summary()
    print(f"{path}: {len(report.records)} images; the stored summary is the percentile one: "
          f"{json.dumps(before, sort_keys=True) == json.dumps(stored['summary'], sort_keys=True)}")
    changed = compare(before, after)
    print(f"verdicts changed: {changed or 'none'}")
    if args.write:
        write(Path(args.model_dir), path, stored, after, report.map_settings)


def compare(before: dict, after: dict) -> list[str]:
    changed = []
    for subset in after:
        print(f"\n{subset} ({after[subset]['images']} images): low end of the 95 % interval against the own baseline, "
              "percentile -> BCa")
        for method, intervals in after[subset]["vs_baseline"].items():
            lows = ", ".join(f"{metric} {before[subset]['vs_baseline'][method][metric]['low']:+.3f} -> "
                             f"{interval['low']:+.3f}" for metric, interval in intervals.items())
            was, now = before[subset]["verdicts"][method]["passes"], after[subset]["verdicts"][method]["passes"]
            print(f"  {method:12s} {'passes' if was else 'fails'} -> {'passes' if now else 'fails'}: {lows}")
            if was != now:
                changed.append(f"{subset}/{method}")
        print(f"  ranking {before[subset]['ranking']} -> {after[subset]['ranking']}")
    return changed


def write(model_dir: Path, path: Path, stored: dict, summary: dict, map_settings: dict) -> None:
    path.write_text(json.dumps({**stored, "summary": summary}, indent=2) + "\n")
    card = model_dir / "README.md"
    section = card.read_text().split(f"## {CARD_HEADING}\n", 1)[1].split("\n## ", 1)[0]
    where = re.search(r"^\d+ images of (.*?), split evenly between the classes", section.strip(), re.MULTILINE)[1]
    command = re.search(r"^Command: `(.*)`$", section, re.MULTILINE)[1]
    result = {**stored, "summary": summary, "map_settings": map_settings}  # `from_json` read them, old key or new
    set_card_section(card, CARD_HEADING, faithfulness_markdown(result, where, command, TITLES))
    print(f"\nwrote {path} and the card's section in {card}")


if __name__ == "__main__":
    main()
