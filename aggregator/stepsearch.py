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
inputs evaluate the same points in the same order; ties keep the shorter step. Values are compared quantized to the
rules' ``tolerance`` (:func:`search_step`), so machines whose float rounding differs still choose the same step.
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
    """The search's result: the chosen step ``length`` along the unit direction, its ``value`` (the objective there),
    the number of objective ``evaluations`` it took, and its ``margin``: the smallest distance of any evaluated value
    from a boundary of the comparison's quantization (0 when values are compared exactly). Another machine whose
    values differ from these by less than ``margin`` makes every comparison the same way, so it evaluates the same
    points and chooses the same step."""

    length: float
    value: float
    evaluations: int
    margin: float


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


def search_step(objective: Callable[[float], float], lengths: np.ndarray, refinements: int,
                tolerance: float = 0.0) -> StepChoice:
    """Maximize ``objective(t)`` over the ascending grid ``lengths``, then refine between the best point's neighbours
    by ``refinements`` golden-section steps. Ties keep the shorter step.

    Values are compared quantized, as ``floor(v / tolerance)`` (exactly when ``tolerance`` is 0): a scoring committee
    must choose the same step on every machine, and another CPU's summation order moves a value by about 1e-9. That
    flips a comparison of two raw values as close as that, but a quantized one only when a value lies that close to a
    boundary (:attr:`StepChoice.margin` says how close the nearest one was).
    """
    if not math.isfinite(tolerance) or tolerance < 0:
        raise AggregatorError(f"the step search's tolerance must be finite and >= 0, got {tolerance!r}")
    margins: list[float] = []
    values: dict[float, float] = {}
    evaluations = 0

    def level(t: float) -> float:
        """The compared level of ``objective(t)`` (the value itself when compared exactly)."""
        nonlocal evaluations
        evaluations += 1
        v = values[t] = float(objective(t))
        if not math.isfinite(v):
            return -math.inf
        if tolerance == 0:
            return v
        q = math.floor(v / tolerance)
        margins.append(min(v - q * tolerance, (q + 1) * tolerance - v))
        return float(q)

    best_t, best_q = 0.0, -math.inf
    levels = []
    for t in lengths:
        q = level(float(t))
        levels.append(q)
        if q > best_q:
            best_t, best_q = float(t), q
    k = int(np.argmax(np.asarray(levels)))  # the first (shortest) of equal maxima
    lo, hi = float(lengths[max(k - 1, 0)]), float(lengths[min(k + 1, len(lengths) - 1)])
    refine = refinements > 0 and hi > lo
    a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    qa, qb = (level(a), level(b)) if refine else (-math.inf, -math.inf)
    for step in range(refinements if refine else 0):
        for t, q in ((a, qa), (b, qb)):
            if q > best_q or (q == best_q and t < best_t):
                best_t, best_q = t, q
        if step == refinements - 1:
            break
        if qa >= qb:  # the maximum lies in [lo, b]
            hi, b, qb = b, a, qa
            a = hi - _GOLDEN * (hi - lo)
            qa = level(a)
        else:
            lo, a, qa = a, b, qb
            b = lo + _GOLDEN * (hi - lo)
            qb = level(b)
    return StepChoice(best_t, values[best_t], evaluations, min(margins, default=0.0))


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
