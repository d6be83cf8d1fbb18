"""A reading of the maps for a person: where each map's strongest region lies, whether the film's edge holds
an outsized share of it, and which maps agree on this film. All from the maps the fused pass made (no model
pass); measured on the model-input frame, which is the film as the model saw it.

- **Where a map peaks**: the centre of its strongest cell-sized region (the map box-filtered over one cell
  of a `GRID` x `GRID` grid, so that one noisy pixel of saliency is no peak). It is *at the edge* when it lies
  in the outer `EDGE_FRACTION` of the frame on any side: the band (51 % of the area) where laterality letters,
  time stamps and film borders sit. A lung mask would be needed to say "in the lung fields", so the reading
  says "the centre of the film" or "the film's edge", no more.
- **The edge's share**: the map's mass in that band, against the band's 51 % of the area.
- **Agreement of two maps**: the overlap (Jaccard index) of their strongest `TOP_SHARE` of cells on the grid
  (Krishna et al. 2022 measure disagreement by top-k feature agreement). Two maps agree when the overlap is
  above `AGREE_ABOVE`, which was chosen on the carved validation split (docs/explanations.md says how).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

GRID = 16
EDGE_FRACTION = 0.15
EDGE_AREA = 1 - (1 - 2 * EDGE_FRACTION) ** 2  # the band's share of the frame: 51 %
TOP_SHARE = 0.10
AGREE_ABOVE = 0.37  # the 95th percentile of two different films' overlap, carved split (docs/explanations.md)
AGREEMENT_MEASURE = (f"Jaccard overlap of the strongest {100 * TOP_SHARE:.0f} % of cells on a {GRID}x{GRID} grid; two maps agree "
                     f"above {AGREE_ABOVE}")


@dataclass(frozen=True)
class MapReading:
    peak: tuple[float, float]  # (x, y) of the strongest region's centre, as fractions of the frame
    peak_at_edge: bool
    edge_share: float  # the share of the map's mass in the outer band

    def record(self) -> dict:
        return {"peak": [round(self.peak[0], 4), round(self.peak[1], 4)], "peak_at_edge": self.peak_at_edge,
                "edge_share": round(self.edge_share, 4)}


def edge_band(height: int, width: int, fraction: float = EDGE_FRACTION) -> np.ndarray:
    """(height, width) booleans: the outer `fraction` of the frame on every side."""
    rows = (np.arange(height) + 0.5) / height
    columns = (np.arange(width) + 0.5) / width
    inner_rows = (rows >= fraction) & (rows <= 1 - fraction)
    inner_columns = (columns >= fraction) & (columns <= 1 - fraction)
    return ~(inner_rows[:, None] & inner_columns[None, :])


def read_map(heatmap: np.ndarray, grid: int = GRID, fraction: float = EDGE_FRACTION) -> MapReading:
    """Where a (height, width) map in [0, 1] peaks, and how much of it lies at the frame's edge."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    height, width = heatmap.shape
    smoothed = _box_filter(heatmap, max(1, round(height / grid)), max(1, round(width / grid)))
    row, column = np.unravel_index(int(np.argmax(smoothed)), smoothed.shape)
    band = edge_band(height, width, fraction)
    total = heatmap.sum()
    return MapReading(((column + 0.5) / width, (row + 0.5) / height), bool(band[row, column]),
                      float(heatmap[band].sum() / total) if total > 0 else float(band.mean()))


def strongest_cells(heatmap: np.ndarray, grid: int = GRID, share: float = TOP_SHARE) -> np.ndarray:
    """(grid * grid) booleans: the map's strongest `share` of the cells of a `grid` x `grid` grid."""
    cells = cell_means(heatmap, grid).ravel()
    count = max(1, round(share * cells.size))
    chosen = np.zeros(cells.size, bool)
    chosen[np.argsort(-cells, kind="stable")[:count]] = True
    return chosen


def overlap(first: np.ndarray, second: np.ndarray) -> float:
    """The Jaccard index of two `strongest_cells` sets."""
    union = np.sum(first | second)
    return float(np.sum(first & second) / union) if union else 0.0


def agreement(maps: dict[str, np.ndarray], grid: int = GRID, share: float = TOP_SHARE) -> dict[str, float]:
    """The overlap of every pair of maps' strongest regions, keyed "first|second" in the maps' order."""
    strongest = {name: strongest_cells(heatmap, grid, share) for name, heatmap in maps.items()}
    return {f"{a}|{b}": round(overlap(strongest[a], strongest[b]), 4) for a, b in combinations(strongest, 2)}


def agreeing_groups(pairs: dict[str, float], names: list[str], above: float = AGREE_ABOVE) -> list[list[str]]:
    """The largest groups of maps in which every two agree (overlap above `above`), each in `names`' order;
    a map that agrees with none is in no group. Two groups may share a map that agrees with both."""
    agree = {frozenset(pair.split("|")) for pair, value in pairs.items() if value > above}
    cliques = [list(group) for size in range(len(names), 1, -1) for group in combinations(names, size)
               if all(frozenset(two) in agree for two in combinations(group, 2))]
    return [group for group in cliques if not any(set(group) < set(other) for other in cliques)]


def cell_means(heatmap: np.ndarray, grid: int = GRID) -> np.ndarray:
    """A (height, width) map averaged over a `grid` x `grid` grid of cells (edges rounded to pixels)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    rows = np.linspace(0, heatmap.shape[0], grid + 1).round().astype(int)
    columns = np.linspace(0, heatmap.shape[1], grid + 1).round().astype(int)
    summed = np.add.reduceat(np.add.reduceat(heatmap, rows[:-1], axis=0), columns[:-1], axis=1)
    return summed / np.outer(np.diff(rows), np.diff(columns))


def _box_filter(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """The mean over a `height` x `width` window around each pixel (the window clipped at the frame)."""
    padded = np.pad(np.cumsum(np.cumsum(values, axis=0), axis=1), ((1, 0), (1, 0)))
    rows, columns = np.arange(values.shape[0]), np.arange(values.shape[1])
    top, bottom = np.clip(rows - height // 2, 0, None), np.clip(rows - height // 2 + height, None, values.shape[0])
    left, right = np.clip(columns - width // 2, 0, None), np.clip(columns - width // 2 + width, None, values.shape[1])
    sums = (padded[bottom][:, right] - padded[top][:, right] - padded[bottom][:, left] + padded[top][:, left])
    return sums / np.outer(bottom - top, right - left)


# --- The reading over a data set: what the card and docs/explanations.md report ---------------------------

MISMATCH_OFFSETS = (1, 7, 31)  # each film's map against the other map of films this many places on


def reading_report(films: list[dict[str, np.ndarray]], grid: int = GRID, share: float = TOP_SHARE) -> dict:
    """Over `films` (each {method: its model-input map}, every film with the same methods): each map's share of
    films peaking at the edge and its mean mass there; for each pair, the mean overlap on the same film, the
    share of films on which the two agree, and the overlap the same pair reaches on two *different* films
    (its 95th percentile: what the maps share wherever they look, which agreement on one film must beat)."""
    names = list(films[0]) if films else []
    readings = {name: [read_map(film[name], grid) for film in films] for name in names}
    strongest = {name: [strongest_cells(film[name], grid, share) for film in films] for name in names}
    count = len(films)
    pairs, mismatched = {}, []
    for first, second in combinations(names, 2):
        same = np.array([overlap(strongest[first][i], strongest[second][i]) for i in range(count)])
        other = np.array([overlap(strongest[first][i], strongest[second][(i + k) % count])
                          for i in range(count) for k in MISMATCH_OFFSETS if count > k])
        mismatched.append(other)
        pairs[f"{first}|{second}"] = {"mean_overlap": float(same.mean()), "agree_share": float(np.mean(same > AGREE_ABOVE)),
                                      "different_films_p95": float(np.quantile(other, 0.95)) if other.size else None}
    pooled = np.concatenate(mismatched) if mismatched else np.zeros(0)
    return {"images": count, "grid": grid, "top_share": share, "edge_fraction": EDGE_FRACTION,
            "agree_above": AGREE_ABOVE,
            "different_films_p95": float(np.quantile(pooled, 0.95)) if pooled.size else None,
            "maps": {name: {"peak_at_edge_share": float(np.mean([r.peak_at_edge for r in readings[name]])),
                            "mean_edge_share": float(np.mean([r.edge_share for r in readings[name]]))}
                     for name in names},
            "pairs": pairs}


def reading_section(report: dict, titles: dict[str, str], where: str, command_line: str) -> str:
    """The card's section: where each map peaks, and which maps agree, on the data set."""
    band_area = 1 - (1 - 2 * report["edge_fraction"]) ** 2  # from the fraction the report was measured with
    maps = "\n".join(f"| {titles[name]} | {_percent(m['peak_at_edge_share'])} | {_percent(m['mean_edge_share'])} |"
                     for name, m in report["maps"].items())
    pairs = "\n".join(
        f"| {titles[pair.split('|')[0]]} and {titles[pair.split('|')[1]]} | {p['mean_overlap']:.3f} "
        f"| {_percent(p['agree_share'])} | {p['different_films_p95']:.3f} |" for pair, p in report["pairs"].items())
    return (
        f"Where each map's strongest region lies, and whether the maps agree, on {report['images']} images of "
        f"{where}: what the app's reading of the maps says on every analysis (`pneumolens/explain/reading.py`).\n\n"
        f"| map | films whose strongest region is at the edge | mean share of the map at the edge |\n|---|---:|---:|\n"
        f"{maps}\n\n"
        f"The edge is the outer {_percent(report['edge_fraction'], 0)} of the frame on every side, "
        f"{_percent(band_area, 0)} of its area, "
        "where laterality letters, time stamps and film borders sit: a map spread evenly puts that share there.\n\n"
        f"| maps | mean overlap on the same film | films on which they agree | overlap on two different films, "
        f"95th percentile |\n|---|---:|---:|---:|\n{pairs}\n\n"
        f"Overlap: the Jaccard index of the two maps' strongest {_percent(report['top_share'], 0)} of cells on a "
        f"{report['grid']}x{report['grid']} grid. The app says two maps agree on a film above "
        f"{report['agree_above']}, chosen on the carved split as the 95th percentile of the overlap of two maps of "
        f"*different* films, pooled over the pairs ({report['different_films_p95']:.3f} here): an agreement above "
        "it is one that the film itself explains, not where the methods look on any film.\n\n"
        f"Command: `{command_line}`")


def _percent(share: float, decimals: int = 1) -> str:
    return f"{100 * share:.{decimals}f} %"
