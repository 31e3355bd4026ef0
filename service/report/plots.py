"""The report's figures, drawn with matplotlib's Agg backend and returned as PNG bytes.

Figures are built with matplotlib.figure.Figure rather than pyplot: no global figure state, nothing to close,
and no display is ever looked for.
"""

from __future__ import annotations

import io
from typing import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure

# Should anything reach for pyplot, it must not look for a display: the report runs on servers.
matplotlib.use("Agg")

#: Pixels per inch of the PNGs: sharp enough on a laptop screen, small enough to keep the page light.
DPI = 100
RIGHT, WRONG, OTHER = "#2a9d8f", "#e76f51", "#8d99ae"
BASELINE_COLOURS = ("#264653", "#8d99ae", "#e9c46a")
HISTOGRAM_BINS = np.linspace(0.0, 1.0, 21)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    # No Software/creation-date chunks: the same numbers give the same bytes.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _figure(width: float = 5.2, height: float = 3.6) -> tuple[Figure, object]:
    """A figure with one set of axes, laid out so labels are not clipped."""
    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.add_subplot()


def calibration_plot(bins: Sequence[dict], title: str) -> bytes:
    """Observed share of right AI plates against the mean predicted score per bin, with the diagonal."""
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], linestyle="--", color=OTHER, linewidth=1, label="perfectly calibrated")
    mean = [row["mean_score"] for row in bins]
    observed = [row["positive_share"] for row in bins]
    counts = np.asarray([row["count"] for row in bins], dtype=float)
    axes.plot(mean, observed, color=BASELINE_COLOURS[0], linewidth=1.5, label="observed")
    # Marker area follows the bin's pass count, so a lone pass in a bin does not look like evidence.
    axes.scatter(mean, observed, s=20 + 200 * counts / counts.max(), color=BASELINE_COLOURS[0], zorder=3,
                 clip_on=False)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean positive score in the bin",
             ylabel="share where the AI plate is right", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize="small")
    return png(figure)


def score_histogram(positives: Sequence[float], labels: Sequence[int] | None, threshold: float, title: str) -> bytes:
    """Distribution of the positive score; split into AI plate right and wrong when there are labels."""
    figure, axes = _figure()
    if labels is not None and len(labels):
        scores, truth = np.asarray(positives, dtype=float), np.asarray(labels, dtype=bool)
        axes.hist([scores[truth], scores[~truth]], bins=HISTOGRAM_BINS, stacked=True, color=[RIGHT, WRONG],
                  label=[f"AI plate right ({int(truth.sum())})", f"AI plate wrong ({int((~truth).sum())})"])
    else:
        axes.hist(positives, bins=HISTOGRAM_BINS, color=OTHER, label=f"all passes ({len(positives)})")
    axes.axvline(threshold, color="black", linestyle=":", linewidth=1, label=f"threshold {threshold:g}")
    axes.set(xlim=(0, 1), xlabel="positive score", ylabel="passes", title=title)
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="upper center", fontsize="small")
    return png(figure)


def accuracy_bars(names: Sequence[str], pick: Sequence[float], camera: Sequence[float],
                  ai: Sequence[float]) -> bytes:
    """Per model and arm: accuracy of the pick beside the always-camera and always-AI baselines."""
    figure, axes = _figure(width=9.0, height=1.0 + 0.75 * len(names))
    rows = np.arange(len(names))
    height = 0.26
    for offset, values, label, colour in ((-height, pick, "pick", BASELINE_COLOURS[0]),
                                          (0.0, camera, "always camera", BASELINE_COLOURS[1]),
                                          (height, ai, "always AI", BASELINE_COLOURS[2])):
        bars = axes.barh(rows + offset, [100 * value for value in values], height=height, label=label,
                         color=colour)
        axes.bar_label(bars, fmt="%.1f%%", padding=3, fontsize="small")
    axes.set_yticks(rows, names)
    axes.invert_yaxis()
    axes.set(xlim=(0, 112), xlabel="labelled passes whose plate is the true plate (%)")
    axes.grid(alpha=0.3, axis="x")
    figure.legend(loc="outside upper center", fontsize="small", ncols=3, frameon=False)
    return png(figure)


def shift_histogram(edges: Sequence[float], counts: Sequence[int], title: str) -> bytes:
    """Passes by how far the candidate's score moved from the answered one, a bar per bin of the fixed edges.

    The bins are finer near 0, so each is drawn the same width and labelled with its edges: a bar's height is
    its count of passes, not a density.
    """
    figure, axes = _figure(width=7.0)
    positions = np.arange(len(counts))
    middle = [lower < 0 < upper for lower, upper in zip(edges, edges[1:])]
    axes.bar(positions, counts, width=0.9, color=[BASELINE_COLOURS[0] if still else OTHER for still in middle])
    axes.set_xticks(np.arange(len(edges)) - 0.5, [f"{edge:g}" for edge in edges], rotation=90, fontsize="small")
    axes.set(xlim=(-0.5, len(counts) - 0.5), xlabel="candidate's positive score − the answered one",
             ylabel="passes", title=title)
    axes.grid(alpha=0.3, axis="y")
    return png(figure)


def threshold_curve(curve: Sequence[dict], best: float, interval: Sequence[float], current: float,
                    title: str) -> bytes:
    """Pick accuracy against the threshold, with the best threshold, its 95% interval and the one in use."""
    figure, axes = _figure(width=7.0)
    axes.plot([point["threshold"] for point in curve], [100 * point["accuracy"] for point in curve],
              color=BASELINE_COLOURS[0], linewidth=1.5, label="pick accuracy")
    axes.axvspan(interval[0], interval[1], color=RIGHT, alpha=0.2, label="95% interval of the best")
    axes.axvline(best, color=RIGHT, linewidth=1.5, label=f"best {best:.3f}")
    axes.axvline(current, color="black", linestyle=":", linewidth=1, label=f"in use {current:g}")
    axes.set(xlim=(0, 1), xlabel="threshold (the AI's plate is taken at positive ≥ threshold)",
             ylabel="labelled passes picked right (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower center", fontsize="small")
    return png(figure)
