"""Our `/explain` against a typical explainable chest X-ray demo serving the same model, side by side.

    python benchmarks/peer_demo.py [--rounds 10]
    python benchmarks/peer_demo.py --serve     # the peer alone, on GRADIO_SERVER_PORT

The peer is what such demos usually are: a `gr.Interface` whose function runs the model once for the
`gr.Label` probabilities and once more inside pytorch-grad-cam's `GradCAM` (a forward and a backward
pass), and answers one `gr.Image` of the Grad-CAM overlay at most 1024 px wide. Ours answers the decision,
the probabilities, four maps with their verdicts, the out-of-distribution check, the similar training
films and the record, each file named in the record. Each serves the bundled model in a process of its
own (`python3 app.py`, and this script with --serve); each request comes from a fresh
`gradio_client.Client`, interleaved on the four examples (each demo first half the time). Prints the p50
of each, their ratio, and what each answer sends (files and their sizes). Take the figures when nothing
else runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pneumolens.modeling import BUNDLED_MODEL, ModelSource, load_model_and_processor  # noqa: E402

PEER_MAX_WIDTH = 1024


def peer_demo(model_dir: str):
    """The one-map demo: probabilities and a Grad-CAM overlay, the way a typical Space computes them."""
    import gradio as gr
    from PIL import Image
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, processor = load_model_and_processor(ModelSource(model_dir), attention="eager")
    model.eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    def tokens_to_grid(tokens):
        patches = tokens[:, 1:, :]
        side = int(patches.shape[1] ** 0.5)
        return patches.reshape(patches.shape[0], side, side, -1).permute(0, 3, 1, 2)

    wrapped = Logits()
    layer = model.dinov2.encoder.layer[-1].norm1

    def explain(image: Image.Image):
        image = image.convert("RGB")
        pixels = processor(images=image, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            probabilities = torch.softmax(wrapped(pixels)[0], dim=-1).tolist()
        predicted = int(np.argmax(probabilities))
        with GradCAM(model=wrapped, target_layers=[layer], reshape_transform=tokens_to_grid) as cam:
            heatmap = cam(input_tensor=pixels, targets=[ClassifierOutputTarget(predicted)])[0]
        if image.width > PEER_MAX_WIDTH:
            image = image.resize((PEER_MAX_WIDTH, round(image.height * PEER_MAX_WIDTH / image.width)))
        shown = np.asarray(image, dtype=np.float32) / 255
        resized = np.asarray(Image.fromarray(heatmap).resize(image.size, Image.BILINEAR))
        return dict(zip(labels, probabilities)), show_cam_on_image(shown, resized, use_rgb=True)

    return gr.Interface(explain, gr.Image(type="pil"), [gr.Label(), gr.Image()], api_name="predict")


def answer_files(answer) -> list[Path]:
    """The files a gradio_client answer carries (downloaded beside each other by the client)."""
    values = answer if isinstance(answer, tuple) else (answer,)
    return [Path(value) for value in values if isinstance(value, str) and value.startswith("/") and Path(value).is_file()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name_or_path", default=str(BUNDLED_MODEL))
    parser.add_argument("--rounds", type=int, default=10, help="Requests per example and demo, after one warm round.")
    parser.add_argument("--serve", action="store_true", help="Serve the peer demo alone, then wait.")
    args = parser.parse_args()
    if args.serve:
        peer_demo(args.model_name_or_path).launch(server_name="127.0.0.1")
        return
    import tempfile

    from gradio_client import Client, handle_file

    from benchmarks.served_app import ServedApp

    calls = {"ours": lambda url, example: Client(url, verbose=False).predict(
                 handle_file(example), "predicted class", api_name="/explain"),
             "peer": lambda url, example: Client(url, verbose=False).predict(handle_file(example), api_name="/predict")}
    timings, sent = {name: [] for name in calls}, {}
    examples = sorted(str(path) for path in (REPO / "examples").glob("*.jpeg"))
    environment = {"MODEL_ID": args.model_name_or_path, "GRADIO_MCP_SERVER": "false"}
    with tempfile.TemporaryDirectory() as temp, \
            ServedApp(Path(temp) / "ours", env=environment) as ours, \
            ServedApp(Path(temp) / "peer", env=environment,
                      command=("benchmarks/peer_demo.py", "--serve", "--model_name_or_path",
                               args.model_name_or_path)) as peer:
        urls = {"ours": ours.url, "peer": peer.url}
        for round_number in range(args.rounds + 1):  # the first round warms both
            for example in examples:
                for name in list(urls)[::1 if round_number % 2 else -1]:
                    started = time.perf_counter()
                    answer = calls[name](urls[name], example)
                    if round_number:
                        timings[name].append(time.perf_counter() - started)
                    sent[name] = answer_files(answer)
    p50 = {name: statistics.median(values) for name, values in timings.items()}
    # Each request beside the other demo's on the same example in the same round: the ratio of each such pair
    # shrugs off the machine's slow spells, which move both.
    pairs = statistics.median(ours / peer for ours, peer in zip(timings["ours"], timings["peer"]))
    print(f"p50 of {len(timings['ours'])} each, interleaved, each demo in its own process: our /explain "
          f"{p50['ours'] * 1000:.1f} ms, the one-map peer {p50['peer'] * 1000:.1f} ms, "
          f"ratio {p50['ours'] / p50['peer']:.3f} (median of the pairs' ratios {pairs:.3f})")
    for name, files in sent.items():
        print(f"{name} sends {len(files)} files for the last example: "
              + ", ".join(f"{file.name} {file.stat().st_size / 1024:.1f} KB" for file in files))


if __name__ == "__main__":
    main()
