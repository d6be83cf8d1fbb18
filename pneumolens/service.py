"""What the app serves: a loaded model answering predict and analyse requests, as data. What a person sees
of it is drawn above this layer: the page's overlays (`serving.displayed`), the figures (`charts`, `sheets`),
the HTML report (`report`); the words the records carry come from `wording`."""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from huggingface_hub import ModelCard
from PIL import Image

from .explain import TITLES, Explainer, Explanation, ExplanationOptions
from .explain import faithfulness
from .explain.options import options_for
from .explain.standing import MethodStanding, load_faithfulness, method_standings
from .explain.reading import AGREE_ABOVE, AGREEMENT_MEASURE, MapReading, agreeing_groups, agreement, read_map
from .device import serving_device
from .dicom import DicomFilm
from .images import describe_file, load_image, read_upload_film
from .decision import (
    NOT_A_RADIOGRAPH, Referral, ReferralBand, decide, gated_decision, operating_threshold, referral,
    referral_fields, stability_checks,
)
from .modeling import (
    ModelSource, attention_kernel, default_model_source, load_model_and_processor, model_file, positive_index,
)
from .preprocessing import pixel_values
from .wording import OOD_WARNING, SHAPE_WARNING, agreement_sentence
from .film_shape import shape_problem
from .ood import OODDetector, captured_features
from .robustness import RobustnessCheck, check_image, withheld_check
from .stress import stress_change
from .similar import SimilarFilms, classifier_inputs, similar_record
from .training_films import training_films

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class ModelInput:
    """An image as the model takes it, and the size it had: its shape alone can rule it out."""
    pixels: torch.Tensor  # (1, 3, H, W)
    size: tuple[int, int]  # (width, height) as decoded
    image: Image.Image  # as decoded: the referral's stability check makes its changed copies from it


@dataclass
class Analysis:
    explanation: Explanation
    decision: str
    threshold: float
    ood: dict
    standings: list[MethodStanding] = field(default_factory=list)  # every method, in the order presented
    positive_label: str = ""  # the class whose probability the threshold applies to
    referral: Referral = field(default_factory=Referral)  # whether a person should read this film, and why
    band: ReferralBand | None = None  # the model's referral band, if it has one
    # The training films most similar in the model's features (`similar.similar_record`); None where the
    # model has no index of them, or the image is not a chest radiograph.
    similar: dict | None = None

    @cached_property
    def readings(self) -> dict[str, MapReading]:
        """Where each map peaks and how much of it lies at the film's edge, in the order presented."""
        maps = self.explanation.input_maps
        order = [standing.name for standing in self.standings if standing.name in maps] or list(maps)
        return {name: read_map(maps[name]) for name in order}

    @cached_property
    def agreement(self) -> dict:
        """Which maps agree on this film's strongest region: every pair's overlap, the groups above the
        cut-off, and the reading in one line."""
        maps = self.explanation.input_maps
        names = list(self.readings)
        pairs = agreement({name: maps[name] for name in names})
        groups = agreeing_groups(pairs, names)
        return {"pairs": pairs, "agree_above": AGREE_ABOVE, "measure": AGREEMENT_MEASURE, "groups": groups,
                "sentence": agreement_sentence(self.readings, groups, TITLES) if len(names) > 1 else ""}

    @property
    def withheld(self) -> bool:
        """Whether no class was decided, because the image does not look like a chest radiograph."""
        return self.decision == NOT_A_RADIOGRAPH

    @property
    def refer(self) -> bool:
        return self.referral.refer

    def record(self) -> dict:
        """The JSON-serialisable result: everything but the maps."""
        return {
            "probabilities": self.explanation.probabilities,
            "decision": self.decision,
            **self.referral.record(),
            "referral_band": self.band.record() if self.band else None,
            "threshold": self.threshold,
            "explained_class": self.explanation.explained_class,
            "out_of_distribution": self.ood,
            "maps": {standing.name: {"faithfulness": standing.verdict, "note": standing.note,
                                     "settings": self.explanation.settings.get(standing.name, ""),
                                     **self.readings[standing.name].record()}
                     for standing in self.standings if standing.name in self.explanation.input_maps},
            "maps_unavailable": self.explanation.unavailable,
            "agreement": self.agreement,
            "similar": self.similar,
        }

    def maps_npz(self) -> bytes:
        """The raw maps, float16 at the image's own resolution, as an .npz archive."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{m: h.astype(np.float16) for m, h in self.explanation.maps.items()})
        return buffer.getvalue()


@dataclass
class ImageCurves:
    """One image's deletion and insertion curves (log-odds of the explained class, blur fill) of every map
    and of the random maps they are judged against."""
    explained_class: str
    curves: dict[str, dict[str, np.ndarray]]
    fill: str = "blur"

    def record(self) -> dict:
        return {"explained_class": self.explained_class, "fill": self.fill,
                "curves": {name: {kind: {"area": faithfulness.area(by_kind[f"{kind}_{self.fill}"]),
                                         "log_odds": [float(v) for v in by_kind[f"{kind}_{self.fill}"]]}
                                  for kind in faithfulness.CURVES}
                           for name, by_kind in self.curves.items()}}


@dataclass(frozen=True)
class ModelIdentity:
    """Which model answered: what a reader needs to reproduce the result."""

    name_or_path: str
    revision: str | None
    model_type: str

    def describe(self) -> str:
        return f"{self.name_or_path} @ {self.revision or 'local files (no Hub revision)'} ({self.model_type})"


class PneumoLensService:
    """One model, its processor, its explainer and its out-of-distribution detector."""

    def __init__(self, source: ModelSource | None = None, device: torch.device | str | None = None,
                 films_setting: str | None = None):
        """`device`: a device, or its name (checked), else the first of CUDA, MPS and the CPU; `films_setting`:
        where the similar training films' pictures are (`training_films.training_films`)."""
        self.source = source or default_model_source()
        self.device = device if isinstance(device, torch.device) else serving_device(device)
        self.model, self.processor = load_model_and_processor(self.source)
        self.model = self.model.to(self.device)
        self.explainer = Explainer(self.model, self.processor)
        self.ood_detector = OODDetector.load(self.source)
        self.config = self.model.config
        self.labels = self.explainer.labels
        # Every method, ordered and given its verdict by the faithfulness measured for this model; made
        # with the settings chosen for it (`explain.py select`), stored beside that measurement.
        self.standings = method_standings(load_faithfulness(self.source))
        self.explanation_options = options_for(self.source)
        self.similar_films = SimilarFilms.load(self.source)
        # Pictures of those films, where the training images are at hand (`training_films`).
        self.film_images = training_films(films_setting, self._films_data())
        # The explainer hooks the model while it runs: a batched prediction and an analysis must not
        # share it at the same moment (they run on different threads in the app).
        self._model_lock = threading.Lock()
        logger.info("Serving %s (%s) on %s; out-of-distribution detector: %s", self.source.name_or_path,
                    self.config.model_type, self.device, "yes" if self.ood_detector else "none")

    def predict(self, image) -> dict:
        """Probabilities, the decision at the model's threshold and the OOD verdict (one forward pass)."""
        return self.predict_many([image])[0]

    def predict_many(self, images: list) -> list[dict]:
        """`predict` for several images in one batched forward pass."""
        return self.predict_inputs([self.model_input(image) for image in images])

    def model_input(self, image) -> ModelInput:
        """An image decoded and preprocessed into the model's (1, 3, H, W) input. The app runs this in
        each request's own thread, so decoding and resizing happen in parallel, outside the batch."""
        decoded = load_image(image)
        return ModelInput(pixel_values(self.processor, [decoded]), decoded.size, decoded)

    def predict_inputs(self, inputs: list[ModelInput]) -> list[dict]:
        """Probabilities, decisions and OOD verdicts of `model_input`s from one batched forward pass
        (what the app's `MicroBatcher` calls)."""
        with self._model_lock, attention_kernel(self.model, "sdpa"), captured_features(self.model) as features:
            probabilities = self.explainer.predict_pixels(torch.cat([given.pixels for given in inputs]))
        oods = [self._ood(features, given.size, row) for row, given in enumerate(inputs)]
        referrals = self.referrals([given.image for given in inputs], probabilities, oods)
        return [{"decision": gated_decision(self.config, p, ood), **referral_fields(self.config, answer),
                 "probabilities": p, "threshold": operating_threshold(self.config), "out_of_distribution": ood}
                for p, ood, answer in zip(probabilities, oods, referrals)]

    def referrals(self, images: list[Image.Image], probabilities: list[dict], oods: list[dict]) -> list[Referral]:
        """Each film's referral (`decision.referral`). The changed copies the model's stability rule asks for,
        of the films in its zone, go through the model in one pass; a film outside the zone costs nothing."""
        wanted = [stability_checks(self.config, p, ood) for p, ood in zip(probabilities, oods)]
        copies = [stress_change(name)(image, 0, 0) for image, names in zip(images, wanted) for name in names]
        changed = iter(self.positive_probabilities(copies) if copies else ())
        return [referral(self.config, p, ood, {name: next(changed) for name in names})
                for p, ood, names in zip(probabilities, oods, wanted)]

    def positive_probabilities(self, images: list[Image.Image]) -> list[float]:
        """The shown probability of the positive class of each image, from one forward pass."""
        positive = self.config.id2label[positive_index(self.config)]
        pixels = pixel_values(self.processor, images)
        with self._model_lock, attention_kernel(self.model, "sdpa"):
            return [p[positive] for p in self.explainer.predict_pixels(pixels)]

    def analyse(self, image, explained_index: int | None = None,
                options: ExplanationOptions | None = None) -> Analysis:
        """Probabilities, decision, OOD verdict and every map, from one forward and one backward pass."""
        with self._model_lock, captured_features(self.model) as features, classifier_inputs(self.model) as taken:
            explanation = self.explainer.explain(image, explained_index, options or self.explanation_options)
        ood = self._ood(features, explanation.image.size)
        decision = gated_decision(self.config, explanation.probabilities, ood)
        (answer,) = self.referrals([explanation.image], [explanation.probabilities], [ood])
        # The film's own features from the pass just made (its first row: the rest are SmoothGrad copies).
        similar = None if self.similar_films is None or ood["flagged"] else similar_record(
            self.similar_films.search(taken[0][0].cpu().numpy()), self.labels)
        return Analysis(explanation, decision, operating_threshold(self.config), ood, self.standings,
                        self.config.id2label[positive_index(self.config)], answer, ReferralBand.of(self.config),
                        similar)

    def film_image(self, film_id: str):
        """A similar training film's picture, or None where the training images are not at hand."""
        return self.film_images.image(film_id) if self.film_images else None

    def faithfulness_curves(self, image, explained_index: int | None = None, steps: int = 10) -> "ImageCurves":
        """This image's deletion and insertion curves (log-odds, blur fill) for every map and the random
        maps they are judged against: how faithful the maps are here, not on average."""
        settings = faithfulness.FaithfulnessSettings(steps=steps, fills=("blur",), road_percentiles=())
        rng = np.random.default_rng(settings.seed)
        with self._model_lock:
            explanation, pixels, maps = faithfulness.explained_with_random_map(
                self.explainer, image, explained_index, self.explanation_options, rng)
            curves = faithfulness.curves(self.model, pixels, maps, explanation.explained_index, settings, rng)
        return ImageCurves(explanation.explained_class, curves)

    def robustness(self, image, seed: int = 0) -> RobustnessCheck:
        """Does this image's decision hold under each acquisition change of the stress suite? The changed
        images go through the model in batches; an image that is not a chest radiograph has no decision
        to check, and the answer says so."""
        given = self.model_input(image)
        clean = self.predict_inputs([given])[0]
        positive, threshold = self.config.id2label[positive_index(self.config)], operating_threshold(self.config)
        if clean["out_of_distribution"]["flagged"]:
            return withheld_check(clean["out_of_distribution"]["warning"], clean["probabilities"][positive],
                                  threshold, positive)
        return check_image(given.image, clean["probabilities"][positive], self.positive_probabilities,
                           lambda p: decide(self.config, p), threshold, positive, seed=seed,
                           band=ReferralBand.of(self.config), refer_reason=clean["refer_reason"])

    def preview(self, path) -> tuple[Image.Image, dict[str, str], DicomFilm | None]:
        """The image as decoded (DICOM windowing, 16-bit range and EXIF rotation applied), what is known of
        the file (`images.describe_file`) and, for a DICOM, the film with its depth (for other windows); no
        model involved. A DICOM is decoded once."""
        film = read_upload_film(path)
        if film is None:
            return load_image(path), describe_file(path), None
        return load_image(film.display()), {"format": "DICOM", **film.fields}, film

    @property
    def identity(self) -> ModelIdentity:
        """Which model this is: a Hub id and the commit its files came from, or a local directory's name
        (never the server's path to it)."""
        name = self.source.name_or_path
        if Path(name).is_dir():
            return ModelIdentity(Path(name).resolve().name, None, self.config.model_type)
        revision = getattr(self.config, "_commit_hash", None) or self.source.revision
        return ModelIdentity(name, revision, self.config.model_type)

    def _ood(self, features, size: tuple[int, int], row: int = 0) -> dict:
        """The out-of-distribution verdict: by the image's shape, and by the detector where there is one.
        "available" says whether a detector scored it; "reason" why it is flagged ("shape", "detector")."""
        verdict = {"available": False, "flagged": False, "reason": None, "warning": None}
        if self.ood_detector is not None and features:
            score = float(self.ood_detector.distance(features[0][row:row + 1].float().cpu().numpy())[0])
            flagged = score > self.ood_detector.threshold
            verdict.update(available=True, score=score, threshold=self.ood_detector.threshold, flagged=bool(flagged),
                           reason="detector" if flagged else None,
                           warning=OOD_WARNING.format(score=score, threshold=self.ood_detector.threshold)
                           if flagged else None)
        problem = shape_problem(size)
        if problem:
            verdict.update(flagged=True, reason="shape", warning=SHAPE_WARNING.format(problem=problem))
        return verdict

    def _films_data(self) -> str | None:
        """The Hub data set the training films are in: the one indexed, else the card's first data set (an
        index built from a local copy names only its folder)."""
        data = self.similar_films.about.get("data") if self.similar_films else None
        if data is None or "/" in data:
            return data
        card = self.card()
        return card.data.datasets[0] if card and card.data.datasets else None

    def card(self) -> ModelCard | None:
        # The card of the same revision as the weights, not whatever the main branch holds now.
        local = model_file(self.source, "README.md")
        return ModelCard.load(local) if local else None


def record_json(analysis: Analysis) -> str:
    return json.dumps(analysis.record(), indent=2)


__all__ = ["Analysis", "ImageCurves", "ModelIdentity", "ModelInput", "PneumoLensService", "record_json"]
