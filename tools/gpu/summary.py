"""Summarise a sweep's finished runs against a reference stress table and pack the best one.

    python3 tools/gpu/summary.py RUNS_DIR OUT_DIR [REFERENCE_STRESS_JSON]

The best run is the one with the highest selection metric (the Trainer's best_metric, measured on the
carved validation split and its stressed copies), so choosing among recipes uses validation data only.
"""
import json
import shlex
import subprocess
import sys
from pathlib import Path

STRESS = Path("eval") / "stress" / "stress.json"
KEY_CHANGES = ("none", "zoom_centre_55", "zoom_centre_65", "zoom_offcentre_65", "text_mixed", "letterbox_75")


def describe(run: Path, reference: dict | None) -> float | None:
    state_file, stress_file = run / "trainer_state.json", run / STRESS
    if not (state_file.exists() and stress_file.exists()):
        print(f"{run.name}: not finished")
        return None
    state, stress = json.loads(state_file.read_text()), json.loads(stress_file.read_text())
    history = [(h["step"], round(h["eval_robust_roc_auc"], 4)) for h in state["log_history"] if "eval_robust_roc_auc" in h]
    train = [h for h in state["log_history"] if "train_runtime" in h]
    print(f"== {run.name}: best robust_roc_auc {state['best_metric']:.4f} at {state['best_model_checkpoint']}")
    print(f"   history {history}")
    if train:
        print(f"   train_runtime {train[-1]['train_runtime']:.0f} s, {train[-1]['train_samples_per_second']:.1f} samples/s")
    print(f"   threshold {stress['threshold']:.3f}")
    for name in KEY_CHANGES:
        row = stress["changes"][name]
        ref = reference["changes"][name] if reference else None
        versus = f"   (reference spec {ref['specificity']:.3f}, flipped NORMAL {ref['flip_rate_negative']:.3f})" if ref else ""
        print(f"   {name:18s} spec {row['specificity']:.3f} sens {row['sensitivity']:.3f} auc {row['roc_auc']:.4f} "
              f"flipped NORMAL {row['flip_rate_negative']:.3f}{versus}")
    return state["best_metric"]


def main() -> None:
    runs, out = Path(sys.argv[1]), Path(sys.argv[2])
    reference = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else None
    scored = [(metric, run) for run in sorted(p for p in runs.iterdir() if p.is_dir())
              if (metric := describe(run, reference)) is not None]
    if scored:
        best = max(scored, key=lambda pair: pair[0])[1]
        print(f"packing {best.name}")
        parts = shlex.quote(f"{out}/best.tar.part-")
        subprocess.run(f"tar -C {shlex.quote(str(best.parent))} --exclude='checkpoint-*' -cf - {shlex.quote(best.name)}"
                       f" | split -b 15m - {parts}", shell=True, check=True)


if __name__ == "__main__":
    main()
