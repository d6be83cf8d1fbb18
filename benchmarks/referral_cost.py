"""What the referral's stability rule costs a request, measured side by side in one run.

    python benchmarks/referral_cost.py [--model_name_or_path DIR] [--rounds 10]

Two apps in this process serve the same model: one with its stability rule (`referral_stability` in its
config), one without it (the band alone, as before the rule). `/predict` and `/explain` through
gradio_client, a fresh client each request, on the four examples, interleaved so that both meet the same
machine (each way first half the time): p50 of each, and their ratio; per example, whether the rule checked
it (a film outside the rule's zone costs nothing more). Take the figures when nothing else runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pneumolens.decision import STABILITY_KEY, StabilityRule  # noqa: E402
from pneumolens.modeling import BUNDLED_MODEL, ModelSource  # noqa: E402
from pneumolens.service import PneumoLensService  # noqa: E402

WAYS = ("with the stability rule", "band alone")
CALLS = {"/predict": (), "/explain": ("predicted class",)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", default=str(BUNDLED_MODEL))
    parser.add_argument("--rounds", type=int, default=10, help="Requests of each example, each way, per endpoint.")
    args = parser.parse_args()
    examples = sorted(str(path) for path in (REPO / "examples").glob("*.jpeg"))
    timings, checked = served_timings(args.model_name_or_path, examples, args.rounds)
    print(json.dumps({"checked by the rule": checked}))
    for endpoint in CALLS:
        with_rule, alone = (statistics.median(timings[endpoint][way]) for way in WAYS)
        print(f"{endpoint}, p50 of {len(timings[endpoint][WAYS[1]])} each, interleaved: with the stability rule "
              f"{with_rule * 1000:.1f} ms, band alone {alone * 1000:.1f} ms, ratio {with_rule / alone:.3f}")


def served_timings(model: str, examples: list[str], rounds: int) -> tuple[dict, dict]:
    """Seconds per call, {endpoint: {way: [...]}}, and which examples the rule checked."""
    from gradio_client import Client, handle_file

    import app

    urls, demos, checked = {}, [], {}
    for way in WAYS:
        service = PneumoLensService(ModelSource(model))
        if StabilityRule.of(service.config) is None:
            raise SystemExit(f"{model} has no stability rule: nothing to compare")
        if way == WAYS[1]:
            setattr(service.config, STABILITY_KEY, None)
        else:
            checked = {Path(example).name: bool(service.predict(example)["stability_check"]) for example in examples}
        demo = app.build_demo(service)
        _, urls[way], _ = demo.launch(prevent_thread_lock=True, quiet=True, **{**app.launch_options(), "mcp_server": False})
        demos.append(demo)
    timings = {endpoint: {way: [] for way in WAYS} for endpoint in CALLS}
    try:
        for round_number in range(rounds + 1):  # the first round warms both
            for endpoint, arguments in CALLS.items():
                for example in examples:
                    for way in WAYS[::1 if round_number % 2 else -1]:
                        started = time.perf_counter()
                        Client(urls[way], verbose=False).predict(handle_file(example), *arguments, api_name=endpoint)
                        if round_number:
                            timings[endpoint][way].append(time.perf_counter() - started)
    finally:
        for demo in demos:
            demo.close()
    return timings, checked


if __name__ == "__main__":
    main()
