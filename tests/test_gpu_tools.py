"""tools/gpu/summary.py: the sweep keeps the run with the best selection metric and packs it whole."""

import json
import subprocess
import sys
import tarfile

from conftest import REPO

SUMMARY = REPO / "tools" / "gpu" / "summary.py"
KEY_ROW = {"specificity": 0.9, "sensitivity": 0.9, "roc_auc": 0.95, "flip_rate_negative": 0.05}
CHANGES = ("none", "zoom_centre_55", "zoom_centre_65", "zoom_offcentre_65", "text_mixed", "letterbox_75")


def finished_run(runs, name, best_metric):
    run = runs / name
    (run / "eval" / "stress").mkdir(parents=True)
    (run / "checkpoint-10").mkdir()
    (run / "checkpoint-10" / "optimizer.pt").write_bytes(b"\0" * 1000)
    (run / "model.safetensors").write_bytes(name.encode())
    (run / "trainer_state.json").write_text(json.dumps({
        "best_metric": best_metric, "best_model_checkpoint": f"{run}/checkpoint-10",
        "log_history": [{"step": 10, "eval_robust_roc_auc": best_metric},
                        {"train_runtime": 12.0, "train_samples_per_second": 100.0}]}))
    (run / "eval" / "stress" / "stress.json").write_text(json.dumps(
        {"threshold": 0.5, "changes": {change: KEY_ROW for change in CHANGES}}))


def test_the_best_finished_run_is_packed_without_its_checkpoints(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    finished_run(runs, "long", 0.991)
    finished_run(runs, "best", 0.998)
    (runs / "unfinished" / "checkpoint-5").mkdir(parents=True)  # no stress table yet: not a candidate
    (runs / "unfinished" / "trainer_state.json").write_text(json.dumps({"best_metric": 0.999}))

    result = subprocess.run([sys.executable, str(SUMMARY), str(runs), str(out)], capture_output=True, text=True,
                            check=True)

    assert "unfinished: not finished" in result.stdout and "packing best" in result.stdout
    parts = sorted(out.glob("best.tar.part-*"))
    assert parts, result.stdout
    packed = tmp_path / "best.tar"
    packed.write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(packed) as tar:
        names = tar.getnames()
        assert tar.extractfile("best/model.safetensors").read() == b"best"
    assert "best/eval/stress/stress.json" in names
    assert not [name for name in names if "checkpoint-" in name]
