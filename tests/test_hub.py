"""The Hub path end to end, over HTTP, against the loopback Hub of `tests/hub_server.py`: training on the
data set from the Hub at a pinned revision, a model round trip (push by LFS, `from_pretrained`,
`pipeline` and the app at the pushed revision) and the Space deployment.

The clients (`huggingface_hub`, `datasets`, `transformers`, the app) run unmodified in subprocesses
whose `HF_ENDPOINT` points at the fake Hub; this test process itself stays offline.
"""

import io
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from datasets import ClassLabel, Dataset, Features
from datasets import Image as ImageFeature
from gradio_client import Client, handle_file

from benchmarks.served_app import ServedApp
from pneumolens.modeling import ModelSource
from pneumolens.service import PneumoLensService
from pneumolens import commands
from tests.conftest import REPO, SHARED_DATA, run_main
from tests.hub_server import FakeHub, train_hf_runs

pytestmark = [pytest.mark.slow]  # each test starts processes against the loopback Hub

TOKEN = "hf_test_token"
DATASET_ID = "hf-vision/chest-xray-pneumonia"
MODEL_ID = "pneumolens/tiny-dinov2"
LABELS = ["NORMAL", "PNEUMONIA"]
DATASET_CARD = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
  - split: validation
    path: data/validation-*
  - split: test
    path: data/test-*
dataset_info:
  features:
  - name: image
    dtype: image
  - name: label
    dtype:
      class_label:
        names:
          '0': NORMAL
          '1': PNEUMONIA
---
# Chest X-ray pneumonia (test copy)
"""


def hub_env(hub: FakeHub, tmp_path) -> dict:
    return hub.client_env(tmp_path / "hf-home")


def run(command: list[str], env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def parquet_shard(paths, with_file_names: bool) -> bytes:
    """A shard in the layout of the Hub copy: an `image` struct (bytes, path) and a ClassLabel `label`."""
    rows = {"image": [{"bytes": path.read_bytes(), "path": path.name if with_file_names else None} for path in paths],
            "label": [LABELS.index(path.parent.name) for path in paths]}
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=LABELS)})
    buffer = io.BytesIO()
    Dataset.from_dict(rows, features=features).to_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def kermany_images():
    """{split: [paths]}: real radiographs from ../shared/data, 10 / 2 / 3 per class."""
    train = SHARED_DATA / "chest_xray" / "train"
    if not train.is_dir():
        pytest.skip(f"{train} is not there (../shared beside the repository)")
    per_class = {label: sorted((train / label).iterdir())[:15] for label in LABELS}
    return {split: [path for label in LABELS for path in per_class[label][start:stop]]
            for split, (start, stop) in {"train": (0, 10), "validation": (10, 12), "test": (12, 15)}.items()}


def dataset_files(images: dict, with_file_names: bool) -> dict[str, bytes]:
    files = {f"data/{split}-00000-of-00001.parquet": parquet_shard(paths, with_file_names)
             for split, paths in images.items()}
    return {"README.md": DATASET_CARD.encode(), **files}


def hub_training(dataset_id: str, backbone, output_dir, *extra) -> list[str]:
    return ["--dataset_name_or_dir", dataset_id, "--model_name_or_path", backbone, "--output_dir", output_dir,
            "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--validation_fraction", "0.25",
            # The tests are about the data's way in and the card: the stages after training are not.
            "--stress_selection_images", "0", "--stress_suite", "false", "--ood_num_train", "0", *extra]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


# -- the data set from the Hub --------------------------------------------------------------------------

UNNAMED_ID = "hf-vision/chest-xray-pneumonia-unnamed"  # the same images, without file names


@pytest.fixture(scope="module")
def hub_trainings(tmp_path_factory, kermany_images, tiny_backbone_dirs):
    """Two trainings on data sets from the Hub, in one process: at a pinned revision of the data set whose
    main has moved on since, and on a copy whose images carry no file names."""
    root = tmp_path_factory.mktemp("hub-trainings")
    with FakeHub(TOKEN) as hub:
        pinned = hub.seed(DATASET_ID, "dataset", dataset_files(kermany_images, with_file_names=True))
        # main moves on after the pin: a shard with fewer training images
        fewer = {**kermany_images, "train": kermany_images["train"][:6] + kermany_images["train"][10:16]}
        moved = hub.seed(DATASET_ID, "dataset", dataset_files(fewer, with_file_names=True))
        assert moved != pinned and hub.lfs_paths(DATASET_ID, "dataset") >= {"data/train-00000-of-00001.parquet"}
        hub.seed(UNNAMED_ID, "dataset", dataset_files(kermany_images, with_file_names=False))
        answers = train_hf_runs(
            hub_env(hub, root), hub_training(DATASET_ID, tiny_backbone_dirs["vit"], root / "pinned",
                                             "--dataset_revision", pinned),
            hub_training(UNNAMED_ID, tiny_backbone_dirs["vit"], root / "unnamed"))
    for status, errors in answers:
        assert status == 0, errors[-3000:]
    return {"hub": hub, "pinned": pinned, "pinned_dir": root / "pinned", "unnamed_dir": root / "unnamed",
            "unnamed_log": answers[1][1]}


def test_training_on_the_hub_dataset_pins_the_revision_and_reports_the_test_split(hub_trainings):
    hub, pinned = hub_trainings["hub"], hub_trainings["pinned"]
    model_dir = hub_trainings["pinned_dir"]
    data_requests = [path for _, path in hub.requests if path.startswith(f"/datasets/{DATASET_ID}/resolve/")]
    assert data_requests and all(f"/resolve/{pinned}/" in path for path in data_requests)
    card = (model_dir / "README.md").read_text()
    assert f"at revision `{pinned}`" in card
    assert "| train | " in card and "| test | 3 | 3 | 6 |" in card
    carved_and_train = sum(int(row.split("|")[-2]) for row in card.splitlines()
                           if row.startswith(("| train |", "| validation (carved) |")))
    assert carved_and_train == 20, "the pinned revision's 20 training images, not main's 12"
    assert "evaluated once, after training" in card and "every patient on one side" in card
    test_metrics = json.loads((model_dir / "eval" / "test" / "metrics.json").read_text())
    assert sum(map(sum, test_metrics["confusion_matrix"])) == 6
    model_index = front_matter(card)["model-index"][0]["results"]
    test_results = {m["type"]: m["value"] for r in model_index if r["dataset"]["split"] == "test" for m in r["metrics"]}
    assert test_results["accuracy"] == pytest.approx(test_metrics["accuracy"], abs=1e-4)
    assert all(r["dataset"]["revision"] == pinned for r in model_index)


def test_images_without_file_names_are_split_per_image_and_the_card_says_so(hub_trainings):
    assert "20 of 20 images carry no file name" in hub_trainings["unnamed_log"]
    card = (hub_trainings["unnamed_dir"] / "README.md").read_text()
    assert "per image, because 20 of 20 images carry no file name" in card
    validation = next(row for row in card.splitlines() if row.startswith("| validation (carved) |"))
    normal, pneumonia = (int(cell) for cell in validation.split("|")[2:4])
    assert normal > 0 and pneumonia > 0 and normal + pneumonia < 20


def test_an_unknown_dataset_or_revision_fails_clearly(tmp_path, tiny_backbone_dirs):
    attempts = [("nobody/nothing", "main"), (DATASET_ID, "0" * 40)]
    with FakeHub(TOKEN) as hub:
        hub.seed(DATASET_ID, "dataset", {"README.md": DATASET_CARD.encode()})
        answers = train_hf_runs(hub_env(hub, tmp_path), *(
            ["--dataset_name_or_dir", name, "--dataset_revision", revision, "--model_name_or_path",
             tiny_backbone_dirs["vit"], "--output_dir", tmp_path / "m"] for name, revision in attempts))
    for (name, _), (status, errors) in zip(attempts, answers):
        last_line = errors.strip().splitlines()[-1]
        assert status == 2 and last_line.startswith(f"error: Could not reach data set '{name}'"), (name, last_line)


# -- a model round trip ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pushed(tiny_trained_dirs, tmp_path_factory):
    """A fake Hub holding the tiny DINOv2 classifier in two commits: the first as trained, the second with
    another threshold. Yields (hub, first commit, second commit, local model dir)."""
    model_dir = tiny_trained_dirs["dinov2"]
    changed = tmp_path_factory.mktemp("changed") / "model"
    subprocess.run(["cp", "-r", str(model_dir), str(changed)], check=True)
    config = json.loads((changed / "config.json").read_text())
    config["operating_threshold"] = 0.123
    (changed / "config.json").write_text(json.dumps(config))
    tmp_path = tmp_path_factory.mktemp("hub")
    # Both commits from one process, each printing its commit id.
    push = ("import sys; from pneumolens.hub import push_model_dir; "
            "[print(push_model_dir(folder, sys.argv[1], sys.argv[2]).oid) for folder in sys.argv[3:]]")
    with FakeHub(TOKEN) as hub:
        pushed = run([sys.executable, "-c", push, MODEL_ID, TOKEN, str(model_dir), str(changed)], hub_env(hub, tmp_path))
        first, second = pushed.stdout.split()[-2:]
        assert second == hub.head(MODEL_ID) and first in hub.repos[("model", MODEL_ID)].commits
        yield hub, first, second, model_dir


def test_the_push_command_publishes_a_model_folder_to_a_branch_and_prints_the_commit_to_pin(tiny_trained_dirs,
                                                                                            tmp_path):
    model_dir, repo_id = tiny_trained_dirs["dinov2"], "you/pneumolens-tiny"
    incomplete = tmp_path / "incomplete"
    shutil.copytree(model_dir, incomplete, ignore=shutil.ignore_patterns("preprocessor_config.json", "checkpoint-*"))
    with FakeHub(TOKEN) as hub:
        env = hub_env(hub, tmp_path)
        command = [sys.executable, "-m", "pneumolens", "push"]
        # Refused before any request, so in this process.
        refused = run_main(commands.main, "python -m pneumolens", "push", incomplete, "--repo_id", repo_id,
                           "--token", TOKEN)
        assert refused.returncode == 2 and (repo_id not in {key[1] for key in hub.repos})
        assert "is not a complete model: it has no preprocessor_config.json (the image processor)" in refused.stderr
        pushed = run([*command, str(model_dir), "--repo_id", repo_id, "--branch", "v1"], env)
        branches = hub.repos[("model", repo_id)].branches
        assert f'revision="{branches["v1"]}"' in pushed.stdout and branches["v1"] != branches["main"]
        files = hub.files(repo_id, revision=branches["v1"])
        assert not hub.files(repo_id, revision="main").keys() & {"model.safetensors", "config.json"}
    published = {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "ood_detector.safetensors"}
    assert published <= set(files) and any(path.startswith("eval/") and path.endswith(".png") for path in files)
    assert not [path for path in files if "checkpoint" in path or path.endswith(("optimizer.pt", ".bin"))]
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()


def test_push_sends_binary_files_by_lfs_and_text_files_as_they_are(pushed):
    hub, first, _, model_dir = pushed
    files, lfs = hub.files(MODEL_ID, revision=first), hub.lfs_paths(MODEL_ID, revision=first)
    assert {"model.safetensors", "ood_detector.safetensors", "eval/carved_validation/roc_curve.png"} <= lfs
    # train_hf.py indexed the training films; the index (numbers and ids) travels with the model.
    assert files["similar_films.faiss"] == (model_dir / "similar_films.faiss").read_bytes()
    assert "similar_films.json" in files
    assert not lfs & {"config.json", "preprocessor_config.json", "README.md"}
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert any(path.endswith(".git/info/lfs/objects/batch") for _, path in hub.requests)


def test_from_pretrained_and_pipeline_load_the_pushed_revision(pushed, tmp_path, real_images):
    hub, first, second, model_dir = pushed
    image = real_images["PNEUMONIA"][0]
    script = """
import json, sys
from transformers import AutoModelForImageClassification, pipeline
model_id, revision, local, image = sys.argv[1:]
model = AutoModelForImageClassification.from_pretrained(model_id, revision=revision)
scores = {r["label"]: r["score"] for r in pipeline("image-classification", model=model_id, revision=revision)(image)}
local_scores = {r["label"]: r["score"] for r in pipeline("image-classification", model=local)(image)}
print(json.dumps({"threshold": model.config.operating_threshold, "labels": model.config.id2label,
                  "scores": scores, "local": local_scores}))
"""
    result = run([sys.executable, "-c", script, MODEL_ID, first, str(model_dir), str(image)], hub_env(hub, tmp_path))
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    local_config = json.loads((model_dir / "config.json").read_text())
    assert loaded["threshold"] == local_config["operating_threshold"] != 0.123, "the first commit, not main"
    assert loaded["labels"] == {"0": "NORMAL", "1": "PNEUMONIA"}
    assert loaded["scores"] == pytest.approx(loaded["local"], abs=1e-6)
    assert first != second


# -- the Space --------------------------------------------------------------------------------------------

def test_deploying_the_space_with_the_bundled_model(tmp_path):
    with FakeHub(TOKEN) as hub:
        run([sys.executable, "deploy_space.py", "--space_id", "pneumolens/demo"], hub_env(hub, tmp_path))
    files, lfs = hub.files("pneumolens/demo", "space"), hub.lfs_paths("pneumolens/demo", "space")
    assert hub.repos[("space", "pneumolens/demo")].sdk == "gradio"
    assert {"app.py", "pneumolens/service.py", "pneumolens/explain/explainer.py", "requirements.txt"} <= set(files)
    assert {"models/pneumolens-dinov2-small/model.safetensors", "models/pneumolens-dinov2-small/ood_detector.safetensors",
            "examples/person1946_bacteria_4874.jpeg"} <= lfs
    assert "models/pneumolens-dinov2-small/similar_films.faiss" in files
    assert files["models/pneumolens-dinov2-small/model.safetensors"] == \
        (REPO / "models/pneumolens-dinov2-small/model.safetensors").read_bytes()
    assert not [path for path in files if path.startswith(("tests/", "benchmarks/")) or "__pycache__" in path]
    meta = front_matter(files["README.md"].decode())
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert re.search(rf"^gradio(\[mcp\])?=={re.escape(meta['sdk_version'])}$", (REPO / "requirements.txt").read_text(),
                     re.MULTILINE)
    assert "pytest" not in files["requirements.txt"].decode() and "torch==" in files["requirements.txt"].decode()
    assert not hub.repos[("space", "pneumolens/demo")].variables


def test_a_zero_gpu_space_gets_the_spaces_package_and_suggests_zero_gpu_hardware(tmp_path):
    from huggingface_hub import SpaceCard

    from pneumolens.space import ServedModel, space_operations

    def contents(operations):
        return {op.path_in_repo: op.path_or_fileobj for op in operations
                if op.path_in_repo in ("README.md", "requirements.txt")}

    plain = contents(space_operations(ServedModel()))
    zero = contents(space_operations(ServedModel(), zero_gpu=True))
    requirements = zero["requirements.txt"].decode().splitlines()
    assert "spaces" in requirements and "spaces" not in plain["requirements.txt"].decode().splitlines()
    assert "pytest==9.0.3" not in requirements and any(line.startswith("torch==") for line in requirements)
    card = SpaceCard(zero["README.md"].decode())  # parses: valid front matter
    assert card.data.suggested_hardware == "zero-a10g" and card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert "suggested_hardware" not in plain["README.md"].decode() and "ZeroGPU" in zero["README.md"].decode()


def test_a_space_serving_a_hub_model_at_a_revision_predicts_like_the_local_model(pushed, tmp_path, real_images):
    hub, first, _, model_dir = pushed
    env = hub_env(hub, tmp_path)
    hub.seed("pneumolens/demo2", "space", {"models/pneumolens-dinov2-small/config.json": b"{}"})  # bundled before
    hub.repos[("space", "pneumolens/demo2")].sdk = "gradio"
    checkout = tmp_path / "space"
    # Deploy, then check the Space out as the Hub would run it: one process for both.
    run([sys.executable, "-c", "import runpy, sys; from huggingface_hub import snapshot_download; checkout = sys.argv[1]; "
         "sys.argv = ['deploy_space.py', *sys.argv[2:]]; runpy.run_path('deploy_space.py', run_name='__main__'); "
         "snapshot_download('pneumolens/demo2', repo_type='space', local_dir=checkout)",
         str(checkout), "--space_id", "pneumolens/demo2", "--model_id", MODEL_ID, "--model_revision", first], env)
    space = hub.repos[("space", "pneumolens/demo2")]
    variables = {key: value["value"] for key, value in space.variables.items()}
    assert variables == {"MODEL_ID": MODEL_ID, "MODEL_REVISION": first}
    files = hub.files("pneumolens/demo2", "space")
    assert not [path for path in files if path.startswith("models/")], "the old bundled model is removed"
    assert front_matter(files["README.md"].decode())["models"] == [MODEL_ID]

    # Run the Space as the Hub would: its files, its variables as the environment.
    hub.requests.clear()
    image = real_images["NORMAL"][0]
    with ServedApp(tmp_path / "gradio", env={**env, **variables}, cwd=checkout) as served:
        result = Client(served.url, verbose=False).predict(handle_file(str(image)), api_name="/predict")
    served_probabilities = json.loads(result)["probabilities"]
    local = PneumoLensService(ModelSource(str(model_dir))).predict(str(image))["probabilities"]
    assert served_probabilities == pytest.approx(local, abs=1e-5)
    # Weights, detector and card all from the pinned commit, never from main (which has moved on).
    model_files = [path for _, path in hub.requests if path.startswith(f"/{MODEL_ID}/resolve/")]
    assert any(path.endswith("/ood_detector.safetensors") for path in model_files)
    assert any(path.endswith("/similar_films.faiss") for path in model_files)
    assert any(path.endswith("/model.safetensors") for path in model_files)
    assert all(f"/resolve/{first}/" in path for path in model_files)


def test_the_spaces_requirements_are_the_pinned_set_less_the_test_extra_and_pyproject_names_every_pin():
    from pneumolens.space import REPO as SPACE_REPO, package_name, space_requirements, test_extra

    pinned = (REPO / "requirements.txt").read_text()
    pinned_names = {package_name(line) for line in pinned.splitlines() if line.strip() and not line.startswith(("#", "-e"))}
    testing = {package_name(requirement) for requirement in test_extra(SPACE_REPO)}
    served = {package_name(line) for line in space_requirements(pinned, test_extra(SPACE_REPO)).splitlines()
              if line.strip() and not line.startswith("#")}
    assert testing == {"pytest", "pypdf", "playwright"} and testing <= pinned_names
    assert served == pinned_names - testing and "-e ." not in space_requirements(pinned, test_extra(SPACE_REPO))
    import tomllib
    declared = {package_name(d) for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared | testing == pinned_names  # a package the code imports is declared and pinned alike
    assert package_name("Gradio[mcp]==6.31.0") == "gradio" and package_name("huggingface_hub>=2") == "huggingface-hub"
