"""Shared fixtures: offline settings, tiny random models saved to disk, small image folders.

The environment variables are set before anything imports transformers, datasets or gradio, so no
test reaches for the network.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.pop("HF_TOKEN", None)

import shutil  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

TINY_SIZE = 32


def _tiny_model(model_type: str):
    from transformers import (
        BitImageProcessor, ConvNextConfig, ConvNextImageProcessor, ConvNextModel, Dinov2Config, Dinov2Model,
        ViTConfig, ViTImageProcessor, ViTModel,
    )

    vit_like = dict(image_size=TINY_SIZE, patch_size=8, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=2)
    if model_type == "vit":
        return ViTModel(ViTConfig(intermediate_size=64, **vit_like), add_pooling_layer=False), \
            ViTImageProcessor(size={"height": TINY_SIZE, "width": TINY_SIZE})
    if model_type == "dinov2":
        # Like the real DINOv2 processor: resize the short edge, then centre-crop.
        return Dinov2Model(Dinov2Config(mlp_ratio=2, **vit_like)), BitImageProcessor(
            size={"shortest_edge": TINY_SIZE + 4}, crop_size={"height": TINY_SIZE, "width": TINY_SIZE},
            do_center_crop=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    if model_type == "convnext":
        return ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                            image_size=TINY_SIZE)), \
            ConvNextImageProcessor(size={"shortest_edge": TINY_SIZE})
    raise ValueError(model_type)


@pytest.fixture(scope="session")
def tiny_backbone_dirs(tmp_path_factory):
    """{model_type: directory} of tiny random backbones (no head), saved like Hub checkpoints."""
    import torch

    torch.manual_seed(0)
    dirs = {}
    for model_type in ("vit", "dinov2", "convnext"):
        model, processor = _tiny_model(model_type)
        directory = tmp_path_factory.mktemp(f"tiny-{model_type}")
        model.save_pretrained(directory)
        processor.save_pretrained(directory)
        dirs[model_type] = directory
    return dirs


def _write_kermany_like_folder(root: Path, patients_per_class: int, images_per_patient: int, seed: int):
    """SPLIT/CLASS/IMAGE with Kermany-style file names; PNEUMONIA images are brighter in the middle."""
    rng = np.random.default_rng(seed)
    for index in range(patients_per_class):
        for image_index in range(images_per_patient):
            for label, name in (("NORMAL", f"IM-{1000 + index:04d}-{image_index + 1:04d}.jpeg"),
                                ("PNEUMONIA", f"person{index + 1}_bacteria_{image_index + 10}.jpeg")):
                pixels = rng.normal(90, 25, size=(40, 40))
                if label == "PNEUMONIA":
                    pixels[10:30, 10:30] += 80
                folder = root / label
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(folder / name)


@pytest.fixture(scope="session")
def small_imagefolder(tmp_path_factory):
    """A generated chest_xray-like folder: train (12 patients x 2 images per class) and val (4 per class)."""
    root = tmp_path_factory.mktemp("imagefolder")
    _write_kermany_like_folder(root / "train", patients_per_class=12, images_per_patient=2, seed=0)
    _write_kermany_like_folder(root / "val", patients_per_class=4, images_per_patient=1, seed=1)
    return root


@pytest.fixture(scope="session")
def real_images():
    """A few real radiographs from ../shared/data: {"NORMAL": [paths], "PNEUMONIA": [paths]}."""
    train = SHARED_DATA / "chest_xray" / "train"
    if not train.is_dir():
        pytest.skip(f"{train} is not there (../shared beside the repository)")
    return {label: sorted((train / label).iterdir())[:6] for label in ("NORMAL", "PNEUMONIA")}


@pytest.fixture
def copy_of(tmp_path):
    def copy(directory: Path) -> Path:
        target = tmp_path / directory.name
        shutil.copytree(directory, target)
        return target
    return copy


# What a tiny training leaves out unless its test is about it (the test passes the flag again): the stressed
# selection copies and the stress suite, half of a tiny training's time.
WITHOUT_STRESS = ("--stress_selection_images", "0", "--stress_suite", "false")


def train_tiny(data_dir: Path, backbone_dir: Path, output_dir: Path, *extra: str) -> Path:
    """Fine-tune a tiny backbone for a few steps with train_hf.py (in-process) and return the model dir.
    `extra` comes last, so a test that is about a stage turns it back on."""
    import train_hf
    from pneumolens import cli

    argv = ["--dataset_name_or_dir", str(data_dir), "--model_name_or_path", str(backbone_dir),
            "--output_dir", str(output_dir), "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2",
            "--per_device_train_batch_size", "8", "--validation_fraction", "0.25", "--use_cpu", "true",
            *WITHOUT_STRESS, *extra]
    cli.run(lambda: train_hf.main(argv))
    return output_dir


def run_main(main, script: str, *args) -> subprocess.CompletedProcess:
    """A command-line script's `main(argv)` in this process, answered as its process would: the exit status
    (2 for a one-line error, as `cli.run` ends it), what it printed and its error line."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from pneumolens import cli

    argv, printed, errors = [str(arg) for arg in args], StringIO(), StringIO()
    with redirect_stdout(printed), redirect_stderr(errors):
        try:
            cli.run(lambda: main(argv))
            status = 0
        except SystemExit as exit:
            status = exit.code
    return subprocess.CompletedProcess([script, *argv], status, printed.getvalue(), errors.getvalue())


@pytest.fixture(scope="session")
def real_imagefolder(tmp_path_factory):
    """A small imagefolder of real radiographs copied from ../shared/data (train 24 + val 4 per class)."""
    train = SHARED_DATA / "chest_xray" / "train"
    if not train.is_dir():
        pytest.skip(f"{train} is not there (../shared beside the repository)")
    root = tmp_path_factory.mktemp("real-imagefolder")
    for label in ("NORMAL", "PNEUMONIA"):
        files = sorted((train / label).iterdir())[::40][:28]
        for split, chosen in (("train", files[:24]), ("val", files[24:])):
            (root / split / label).mkdir(parents=True)
            for path in chosen:
                shutil.copy(path, root / split / label / path.name)
    return root


@pytest.fixture(scope="session")
def tiny_trained_dirs(tmp_path_factory, real_imagefolder, tiny_backbone_dirs):
    """{model_type: directory} of tiny classifiers fine-tuned for a few steps on real radiographs."""
    return {
        model_type: train_tiny(real_imagefolder, backbone, tmp_path_factory.mktemp(f"trained-{model_type}"),
                               "--max_steps", "30", "--learning_rate", "1e-3", "--eval_steps", "30",
                               "--save_steps", "30")
        for model_type, backbone in tiny_backbone_dirs.items()
    }


@pytest.fixture(scope="session")
def referring_model(tiny_trained_dirs, tmp_path_factory):
    """The tiny DINOv2 classifier with a referral band and a stability rule set around three real films at
    512 px, so that one lies inside the band ("band"), one outside it but moved across the threshold by a
    change of the rule ("stability") and one beyond the rule's zone ("decided"). (model dir, {role: film}).
    The tiny model's probabilities all lie near 0.47, so the threshold and the band are placed among them."""
    import json

    from pneumolens.decision import ReferralBand, StabilityRule
    from pneumolens.modeling import ModelSource
    from pneumolens.referral import STABILITY_CHANGES
    from pneumolens.service import PneumoLensService
    from pneumolens.stress import stress_change

    directory = tmp_path_factory.mktemp("referring") / "model"
    shutil.copytree(tiny_trained_dirs["dinov2"], directory)
    films = []
    for source in sorted((REPO / "examples").glob("*.jpeg")):
        film = Image.open(source).convert("L")
        film = film.resize((512, round(512 * film.height / film.width)))
        films.append(directory.parent / source.name)
        film.save(films[-1])
    service = PneumoLensService(ModelSource(str(directory)))
    shown = {film: service.predict(film) for film in films}
    films = [film for film in films if not shown[film]["out_of_distribution"]["flagged"]]
    p = {film: shown[film]["probabilities"]["PNEUMONIA"] for film in films}
    changed = {film: service.positive_probabilities([stress_change(name)(Image.open(film).convert("RGB"), 0, 0)
                                                     for name in STABILITY_CHANGES]) for film in films}
    log_odds = lambda q: float(np.log(q / (1 - q)))  # noqa: E731
    for moved in films:
        furthest = max(changed[moved], key=lambda q: abs(q - p[moved]))
        threshold = p[moved] + 0.6 * (furthest - p[moved])
        margin = {film: abs(log_odds(p[film]) - log_odds(threshold)) for film in films}
        inside, *_, beyond = sorted((film for film in films if film != moved), key=margin.get)
        if margin[inside] < margin[moved] < margin[beyond]:
            break
    else:
        pytest.fail(f"No film of {films} can be placed: {p}, {changed}")
    band = ReferralBand.around(threshold, (margin[inside] + margin[moved]) / 2)
    rule = StabilityRule(STABILITY_CHANGES, 1, (margin[moved] + margin[beyond]) / 2)
    config = json.loads((directory / "config.json").read_text())
    config.update(operating_threshold=threshold, referral_band=band.saved(), referral_stability=rule.saved())
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory, {"band": inside, "stability": moved, "decided": beyond}
