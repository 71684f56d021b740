"""The server step search: how far the global model moves along a coalition's aggregate (pure functions).

Shapley values of plain FedAvg updates reward damping: when the honest updates overshoot, a zero update averaged in
with its declared weight shortens the step, and the shorter step really is better on the validation set, so a free
rider is paid for doing nothing (issue 11). With the search, a coalition's model is not ``w + d_S`` (``d_S`` the
displacement the bounty's strategy makes from ``S``'s updates) but the best point of the ray ``w + t d_S / |d_S|``
on the sponsor's validation set, over a fixed grid of step lengths ``t``; the round's global model takes the step
chosen for the updates it keeps. Adding a zero update rescales ``d_S`` without turning it, so ``S`` and
``S + {zero}`` reach the same models and the zero update is worth 0 up to float rounding; tiny noise turns the
direction by next to nothing and is worth next to nothing too.

The grid depends on the round only through ``scale`` (the largest norm among the round's scored updates), never on
the coalition, so the same direction gives the same model whatever rescaled it. It is a log grid from
``max_multiplier x scale`` down ``octaves`` octaves, ``per_octave`` points an octave, plus 0 (keeping the global
model), then ``refinements`` golden-section steps between the best point's neighbours. Deterministic: the same
inputs evaluate the same points in the same order; ties keep the shorter step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from fedcore.errors import AggregatorError

Arrays = dict[str, np.ndarray]
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class StepChoice:
    """The search's result: the chosen step ``length`` along the unit direction, its ``value`` (the objective there)
    and the number of objective ``evaluations`` it took."""

    length: float
    value: float
    evaluations: int


def step_lengths(scale: float, *, max_multiplier: float, octaves: int, per_octave: int) -> np.ndarray:
    """The grid: ``0`` then ``max_multiplier x scale x 2^(-k / per_octave)`` for ``k = octaves x per_octave .. 0``.

    Returns
    -------
    np.ndarray, shape (octaves x per_octave + 2,)
        Ascending step lengths (only ``[0.0]`` when ``scale`` is 0).
    """
    if not math.isfinite(scale) or scale < 0:
        raise AggregatorError(f"the step search's scale must be finite and >= 0, got {scale!r}")
    if scale == 0:
        return np.zeros(1)
    k = np.arange(octaves * per_octave, -1, -1, dtype=np.float64)
    return np.concatenate([[0.0], max_multiplier * scale * np.exp2(-k / per_octave)])


def search_step(objective: Callable[[float], float], lengths: np.ndarray, refinements: int) -> StepChoice:
    """Maximize ``objective(t)`` over the ascending grid ``lengths``, then refine between the best point's neighbours
    by ``refinements`` golden-section steps. Ties keep the shorter step."""
    best_t, best_v = 0.0, -math.inf
    values = []
    for t in lengths:
        v = float(objective(float(t)))
        values.append(v)
        if v > best_v:
            best_t, best_v = float(t), v
    evaluations = len(values)
    k = int(np.argmax(np.asarray(values)))  # the first (shortest) of equal maxima
    lo, hi = float(lengths[max(k - 1, 0)]), float(lengths[min(k + 1, len(lengths) - 1)])
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fa, fb = (float(objective(a)), float(objective(b))) if refinements > 0 and hi > lo else (-math.inf, -math.inf)
    evaluations += 2 if refinements > 0 and hi > lo else 0
    for step in range(refinements if hi > lo else 0):
        for t, v in ((a, fa), (b, fb)):
            if v > best_v or (v == best_v and t < best_t):
                best_t, best_v = t, v
        if step == refinements - 1:
            break
        if fa >= fb:  # the maximum lies in [lo, b]
            hi, b, fb = b, a, fa
            a = hi - _GOLDEN * (hi - lo)
            fa = float(objective(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + _GOLDEN * (hi - lo)
            fb = float(objective(b))
        evaluations += 1
    return StepChoice(best_t, best_v, evaluations)


def direction(global_weights: Mapping[str, np.ndarray], moved: Mapping[str, np.ndarray]) -> tuple[Arrays, float]:
    """The unit direction (float64) from ``global_weights`` to ``moved`` and the distance between them (the
    direction is all zeros when they are equal)."""
    delta = {k: np.asarray(moved[k], dtype=np.float64) - np.asarray(global_weights[k], dtype=np.float64)
             for k in global_weights}
    norm = math.sqrt(math.fsum(float(np.square(d).sum()) for _, d in sorted(delta.items())))
    if not math.isfinite(norm):
        raise AggregatorError("the aggregate's step is not finite")
    return ({k: d / norm for k, d in delta.items()} if norm > 0 else delta), norm


def step_along(global_weights: Mapping[str, np.ndarray], unit: Mapping[str, np.ndarray], length: float) -> Arrays:
    """``w + length x unit`` in float64, returned as float32."""
    return {k: (np.asarray(w, dtype=np.float64) + length * unit[k]).astype(np.float32)
            for k, w in global_weights.items()}
