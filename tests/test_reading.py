"""The reading of the maps: where each peaks, how much lies at the film's edge, which maps agree."""

import html

import numpy as np
import pytest

from pneumolens.explain.reading import (
    AGREE_ABOVE, agreeing_groups, agreement, edge_band, read_map, reading_report, strongest_cells,
)
from pneumolens.presentation import EDGE_CAVEAT, caption_markdown, edge_share_line
from pneumolens.explain import TITLES
from pneumolens.wording import agreement_sentence

SIZE = 224
CELL = SIZE // 16


def blob(row: float, column: float, radius: float = 20.0, size: int = SIZE) -> np.ndarray:
    """A map with one round region of weight at (row, column), fractions of the frame."""
    rows, columns = np.mgrid[0:size, 0:size]
    return np.exp(-((rows - row * size) ** 2 + (columns - column * size) ** 2) / (2 * radius ** 2))


def block(top: int, left: int, cells: int = 4) -> np.ndarray:
    """A map that is 1 on a square of `cells` x `cells` grid cells and 0 elsewhere."""
    heatmap = np.zeros((SIZE, SIZE))
    heatmap[top * CELL:(top + cells) * CELL, left * CELL:(left + cells) * CELL] = 1.0
    return heatmap


def test_the_edge_band_is_the_outer_15_percent_and_half_the_frame():
    band = edge_band(SIZE, SIZE)
    assert band.mean() == pytest.approx(1 - 0.7 ** 2, abs=0.01)
    assert band[0, SIZE // 2] and band[SIZE // 2, -1] and not band[SIZE // 2, SIZE // 2]


def test_a_map_peaks_where_its_strongest_region_is_not_at_one_noisy_pixel():
    centre = read_map(blob(0.5, 0.45))
    assert centre.peak == pytest.approx((0.45, 0.5), abs=0.01) and not centre.peak_at_edge
    assert centre.edge_share < 0.05
    letter = read_map(blob(0.06, 0.08, radius=8) + 0.2 * blob(0.5, 0.5))
    assert letter.peak_at_edge and letter.peak == pytest.approx((0.08, 0.06), abs=0.01)
    # One bright pixel at the edge over a broad central region: the region, not the pixel, is the peak.
    noisy = blob(0.5, 0.5)
    noisy[2, 2] = 3.0
    assert not read_map(noisy).peak_at_edge
    flat = read_map(np.full((SIZE, SIZE), 0.5))
    assert flat.edge_share == pytest.approx(edge_band(SIZE, SIZE).mean())


def test_overlap_of_known_regions_and_the_groups_that_agree():
    # Strongest 10 % of 256 cells = 26 cells; each block is 16 cells, topped up by the ties in cell order.
    maps = {"attribution": block(6, 6), "saliency": block(6, 6), "gradcam": block(7, 7), "rollout": block(0, 0)}
    strongest = {name: strongest_cells(heatmap) for name, heatmap in maps.items()}
    assert all(cells.sum() == 26 for cells in strongest.values())
    pairs = agreement(maps)
    assert list(pairs) == ["attribution|saliency", "attribution|gradcam", "attribution|rollout", "saliency|gradcam",
                           "saliency|rollout", "gradcam|rollout"]
    assert pairs["attribution|saliency"] == 1.0
    # Blocks of 16 cells shifted by one cell share 9; the 10 filler cells are the same first cells in order.
    assert AGREE_ABOVE < pairs["attribution|gradcam"] < 1.0
    assert pairs["attribution|rollout"] < AGREE_ABOVE
    groups = agreeing_groups(pairs, list(maps))
    assert groups == [["attribution", "saliency", "gradcam"]]
    assert agreeing_groups({"attribution|saliency": 0.1}, ["attribution", "saliency"]) == []
    # A map that agrees with two maps that do not agree with each other: two groups, not one of three.
    chain = {"attribution|saliency": 0.5, "saliency|rollout": 0.5, "attribution|rollout": 0.1}
    assert agreeing_groups(chain, ["attribution", "saliency", "rollout"]) == [["attribution", "saliency"],
                                                                              ["saliency", "rollout"]]


def test_the_sentence_names_who_agrees_who_does_not_and_who_peaks_at_the_edge():
    readings = {"attribution": read_map(blob(0.5, 0.5)), "saliency": read_map(blob(0.5, 0.5)),
                "gradcam": read_map(blob(0.4, 0.6, radius=40)), "rollout": read_map(blob(0.05, 0.05, radius=8))}
    sentence = agreement_sentence(readings, [["attribution", "saliency"]], TITLES)
    assert sentence == ("Transformer attribution and gradient saliency agree on the strongest region; Grad-CAM and "
                        "attention rollout each mark a region of their own; attention rollout peaks at the film's "
                        "edge, where letters and borders sit.")
    assert agreement_sentence(readings, [], TITLES).startswith("The maps do not agree on the strongest region")
    # The caption carries the caveat only for the map that peaks at the edge.
    from pneumolens.explain.standing import MethodStanding

    standing = MethodStanding("rollout", True, "measured")
    caption = caption_markdown(standing, 1, 4, "PNEUMONIA", reading=readings["rollout"])
    assert html.escape(EDGE_CAVEAT) in caption and html.escape(edge_share_line(readings["rollout"])) in caption
    assert "edge-caveat" not in caption_markdown(MethodStanding("attribution", True, ""), 1, 4, "PNEUMONIA",
                                                 reading=readings["attribution"])


def test_the_report_over_films_counts_edge_peaks_and_agreement_against_different_films():
    films = [{"attribution": blob(0.5, 0.2 + 0.08 * i), "saliency": blob(0.5, 0.2 + 0.08 * i),
              "rollout": blob(0.05, 0.05 + 0.1 * i, radius=8)} for i in range(8)]
    report = reading_report(films)
    assert report["images"] == 8
    assert report["maps"]["rollout"]["peak_at_edge_share"] == 1.0
    assert report["maps"]["attribution"]["peak_at_edge_share"] == 0.0
    assert report["pairs"]["attribution|saliency"]["mean_overlap"] == 1.0
    assert report["pairs"]["attribution|saliency"]["agree_share"] == 1.0
    assert report["pairs"]["attribution|rollout"]["agree_share"] == 0.0
    # On different films the same two methods overlap less than on the same film.
    assert report["pairs"]["attribution|saliency"]["different_films_p95"] < 1.0


def test_every_record_carries_the_reading(tiny_trained_dirs, real_images):
    import json

    from pneumolens.modeling import ModelSource
    from pneumolens.presentation import decision_markdown
    from pneumolens.serving.api import ProgramApi
    from pneumolens.service import PneumoLensService

    service = PneumoLensService(ModelSource(str(tiny_trained_dirs["dinov2"])))
    analysis = service.analyse(real_images["NORMAL"][0])
    record = analysis.record()
    for name, entry in record["maps"].items():
        reading = read_map(analysis.explanation.input_maps[name])
        assert entry["peak_at_edge"] == reading.peak_at_edge and entry["edge_share"] == pytest.approx(reading.edge_share, abs=1e-4)
    assert set(record["agreement"]["pairs"]) == {f"{a}|{b}" for i, a in enumerate(record["maps"])
                                                 for b in list(record["maps"])[i + 1:]}
    assert record["agreement"]["sentence"] in decision_markdown(analysis)
    # The API's record (gradio_client's and MCP's) and the page's are the same reading.
    agent = json.loads(ProgramApi(service).explain(str(real_images["NORMAL"][0]))[0])
    assert agent["agreement"] == record["agreement"]
    assert {name: entry["peak_at_edge"] for name, entry in agent["maps"].items()} == \
        {name: entry["peak_at_edge"] for name, entry in record["maps"].items()}
