"""Plain words for a candidate against the current model: the gap in accuracy and whether it beats noise.

Both models are judged on the same labelled passes, so the test is paired: only the passes where exactly one
model picked the true plate (the discordant ones) say which is better, and under "no difference" each of them
is a fair coin (McNemar's exact test, a binomial test on the discordant passes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Fewer labelled or discordant passes than this and the report does not call a winner.
MIN_PASSES = 30
#: A p-value below this makes a gap "bigger than noise".
SIGNIFICANCE = 0.05


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value: the chance of a split this uneven of the discordant passes by coin flips."""
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    fewer = min(only_first, only_second)
    # The tail's largest term is its last, C(n, fewer) / 2^n (from log-gamma: no huge integers, which made a
    # replay's tens of thousands of discordant passes take minutes); the ones before it follow by the ratio
    # k / (n - k + 1) and shrink fast, so the sum stops once they no longer count.
    last = math.exp(math.lgamma(discordant + 1) - math.lgamma(fewer + 1) - math.lgamma(discordant - fewer + 1)
                    - discordant * math.log(2))
    term, total = 1.0, 1.0
    for k in range(fewer, 0, -1):
        term *= k / (discordant - k + 1)
        total += term
        if term < 1e-17 * total:
            break
    return min(1.0, 2 * last * total)


def p_words(p_value: float) -> str:
    """A p-value as it is read: "p < 0.001" when tiny, else to two significant digits."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.2g}"


def percent(share: float | None, digits: int = 1) -> str:
    """A share as a percentage ("91.2%"), or an en dash when there is none."""
    return "–" if share is None else f"{100 * share:.{digits}f}%"


@dataclass(frozen=True)
class Paired:
    """Two models' picks judged on the same labelled passes."""

    current: str
    candidate: str
    labelled: int
    current_right: int
    candidate_right: int
    #: Passes only the current model got right, and passes only the candidate got right.
    only_current: int
    only_candidate: int

    @property
    def discordant(self) -> int:
        """Passes where exactly one of the two models picked the true plate."""
        return self.only_current + self.only_candidate

    @property
    def p_value(self) -> float:
        """McNemar's exact p-value of the discordant passes."""
        return mcnemar_p(self.only_current, self.only_candidate)


def gap_words(paired: Paired) -> str:
    """The accuracies side by side and the gap in points, e.g. "v2 picked ... : better by 2.7 points"."""
    if not paired.labelled:
        return f"{paired.candidate}: no labelled pass scored by both it and {paired.current} yet, so no verdict."
    candidate = paired.candidate_right / paired.labelled
    current = paired.current_right / paired.labelled
    points = round(100 * (candidate - current), 1)
    gap = "the same" if points == 0 else f"{'better' if points > 0 else 'worse'} by {abs(points):.1f} points"
    return (f"{paired.candidate} picked the true plate on {percent(candidate)} of {paired.labelled} labelled passes, "
            f"against {percent(current)} for {paired.current} on the same passes: {gap}.")


def noise_words(paired: Paired) -> str:
    """Whether the gap is bigger than noise, or that there are not enough labels to tell."""
    if paired.labelled < MIN_PASSES:
        return f"Not enough labels to tell: {paired.labelled} labelled passes (about {MIN_PASSES} are needed)."
    if paired.discordant < MIN_PASSES:
        return (f"Not enough labels to tell: the models differ on only {paired.discordant} labelled passes "
                f"(about {MIN_PASSES} are needed).")
    tested = (f"of the {paired.discordant} passes only one model got right, {paired.candidate} had "
              f"{paired.only_candidate} and {paired.current} {paired.only_current} (McNemar's exact test, "
              f"{p_words(paired.p_value)})")
    if paired.p_value < SIGNIFICANCE:
        return f"The gap is bigger than noise: {tested}."
    return f"The gap is within noise: {tested}."


def verdict(paired: Paired) -> str:
    """The whole verdict on a candidate: the gap, then whether it is bigger than noise."""
    if not paired.labelled:
        return gap_words(paired)
    return f"{gap_words(paired)} {noise_words(paired)}"
