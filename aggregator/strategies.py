"""Aggregation strategies: pure functions over arrays, and thin Flower-style Strategy classes.

Conventions
-----------
* A model or an update is ``dict[str, np.ndarray]`` (name -> array). Updates are **deltas**
  ``w_local - w_global`` (see :mod:`node.training`); ``k`` updates share names and shapes.
* The arithmetic runs in float64 and returns float32, in a fixed order, so an auditor who replays
  a round with the same inputs gets the same bytes.
* A Strategy never raises on a bad client result: failures and invalid updates are passed in and
  reported back as data (:class:`RoundAggregate.excluded`).

Server optimizers follow Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), Algorithm 2:
with the mean delta ``D`` as pseudo-gradient,
``m = b1 m + (1 - b1) D``; ``v`` = Adagrad ``v + D^2`` | Adam ``b2 v + (1 - b2) D^2`` |
Yogi ``v - (1 - b2) D^2 sign(v - D^2)``; then ``w = w + lr m / (sqrt(v) + tau)``, no bias correction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fedcore.errors import AggregatorError, ConfigError
from fedcore.types import Update

Arrays = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Pure functions


def _names(updates: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    if len(updates) == 0:
        raise AggregatorError("no updates to aggregate")
    names = list(updates[0])
    for i, update in enumerate(updates[1:], start=1):
        if set(update) != set(names):
            raise AggregatorError(f"update {i} has tensors {sorted(update)}, expected {sorted(names)}")
        for name in names:
            if np.shape(update[name]) != np.shape(updates[0][name]):
                raise AggregatorError(f"update {i} tensor {name!r} has shape {np.shape(update[name])}")
    return names


def _stack(updates: Sequence[Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    """``(k, *shape)`` float64 stack of one tensor across updates."""
    return np.stack([np.asarray(u[name], dtype=np.float64) for u in updates])


def _flatten(updates: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """``(k, p)`` float64: each update as one vector (tensors in name order)."""
    names = sorted(_names(updates))
    return np.stack([np.concatenate([np.asarray(u[n], dtype=np.float64).ravel() for n in names]) for u in updates])


def update_norm(arrays: Mapping[str, np.ndarray]) -> float:
    """The L2 norm of an update over all its tensors, in float64 (inf when it overflows even there)."""
    squares = [np.square(np.asarray(a, dtype=np.float64)).sum() for _, a in sorted(arrays.items())]
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sqrt(math.fsum(squares))) if all(np.isfinite(squares)) else math.inf


def weighted_average(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float] | np.ndarray) -> Arrays:
    """``sum_i w_i u_i / sum_i w_i`` per tensor.

    Parameters
    ----------
    updates : sequence of k dicts of arrays
    weights : sequence of k non-negative floats, positive sum

    Returns
    -------
    dict[str, np.ndarray]
        float32, same names and shapes.
    """
    names = _names(updates)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != len(updates):
        raise AggregatorError(f"{len(updates)} updates but {w.shape[0]} weights")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise AggregatorError("weights must be finite, non-negative, with a positive sum")
    w = w / w.sum()
    return {name: np.tensordot(w, _stack(updates, name), axes=1).astype(np.float32) for name in names}


def fedavg(updates: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float] | None = None) -> Arrays:
    """FedAvg (McMahan et al. 2017): average of updates weighted by sample counts.

    Parameters
    ----------
    updates : sequence of k dicts of arrays, shapes ``s_j`` per tensor ``j``
    weights : sequence of k sample counts; ``None`` = equal weights

    Returns
    -------
    dict[str, np.ndarray]
        Tensor ``j`` has shape ``s_j``, float32.
    """
    return weighted_average(updates, np.ones(len(updates)) if weights is None else weights)


def coordinate_median(updates: Sequence[Mapping[str, np.ndarray]]) -> Arrays:
    """Coordinate-wise median (Yin et al. 2018); ignores up to half minus one outliers per coordinate.

    For an even ``k`` the median is the mean of the two middle values.
    """
    return {name: np.median(_stack(updates, name), axis=0).astype(np.float32) for name in _names(updates)}


def trimmed_mean(updates: Sequence[Mapping[str, np.ndarray]], trim_fraction: float = 0.1) -> Arrays:
    """Coordinate-wise trimmed mean (Yin et al. 2018).

    Per coordinate, drop the ``b = floor(trim_fraction * k)`` largest and ``b`` smallest values
    and average the remaining ``k - 2b``.

    Parameters
    ----------
    trim_fraction : float in [0, 0.5)
    """
    if not 0.0 <= trim_fraction < 0.5:
        raise AggregatorError(f"trim_fraction must be in [0, 0.5), got {trim_fraction!r}")
    names = _names(updates)
    k = len(updates)
    b = int(np.floor(trim_fraction * k))
    result = {}
    for name in names:
        ordered = np.sort(_stack(updates, name), axis=0)
        result[name] = ordered[b : k - b].mean(axis=0).astype(np.float32)
    return result


def pairwise_squared_distances(updates: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    """``(k, k)`` matrix of squared Euclidean distances between flattened updates."""
    flat = _flatten(updates)
    diff = flat[:, None, :] - flat[None, :, :]
    return np.einsum("ijp,ijp->ij", diff, diff)


def krum_scores(updates: Sequence[Mapping[str, np.ndarray]], n_byzantine: int) -> np.ndarray:
    """Krum scores (Blanchard et al. 2017): for each update, the sum of squared distances to its
    ``k - f - 2`` nearest other updates (at least 1). Lower is more central.

    Returns
    -------
    np.ndarray, shape (k,)
    """
    k = len(updates)
    if n_byzantine < 0:
        raise AggregatorError(f"n_byzantine must be >= 0, got {n_byzantine!r}")
    distances = pairwise_squared_distances(updates)
    if k == 1:
        return np.zeros(1)
    n_neighbours = max(1, min(k - 1, k - n_byzantine - 2))
    scores = np.empty(k)
    for i in range(k):
        others = np.delete(distances[i], i)
        scores[i] = np.sort(others)[:n_neighbours].sum()
    return scores


def krum_select(updates: Sequence[Mapping[str, np.ndarray]], n_byzantine: int, n_selected: int = 1) -> np.ndarray:
    """Indices of the ``n_selected`` lowest Krum scores (ties broken by index), best first."""
    if not 1 <= n_selected <= len(updates):
        raise AggregatorError(f"n_selected must be in [1, {len(updates)}], got {n_selected!r}")
    scores = krum_scores(updates, n_byzantine)
    return np.argsort(scores, kind="stable")[:n_selected]


def krum(updates: Sequence[Mapping[str, np.ndarray]], n_byzantine: int) -> Arrays:
    """The single update with the lowest Krum score (tolerates ``f`` attackers when ``k > 2f + 2``)."""
    best = int(krum_select(updates, n_byzantine, 1)[0])
    return {name: np.asarray(a, dtype=np.float32).copy() for name, a in updates[best].items()}


def multi_krum(
    updates: Sequence[Mapping[str, np.ndarray]],
    n_byzantine: int,
    n_selected: int | None = None,
    weights: Sequence[float] | None = None,
) -> Arrays:
    """Multi-Krum: FedAvg over the ``n_selected`` (default ``k - f``) lowest-scored updates.

    ``weights`` (sample counts of all k updates) weight the average of the selected ones.
    """
    m = len(updates) - n_byzantine if n_selected is None else n_selected
    chosen = krum_select(updates, n_byzantine, max(1, m))
    chosen_weights = None if weights is None else [weights[i] for i in chosen]
    return fedavg([updates[i] for i in chosen], chosen_weights)


@dataclass(frozen=True)
class ServerOptState:
    """Moments of a server optimizer: ``m`` (first) and ``v`` (second), and the step count."""

    m: Arrays
    v: Arrays
    step: int = 0


def _server_adaptive_step(
    kind: str,
    weights: Mapping[str, np.ndarray],
    pseudo_gradient: Mapping[str, np.ndarray],
    state: ServerOptState | None,
    lr: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[Arrays, ServerOptState]:
    names = list(weights)
    if set(pseudo_gradient) != set(names):
        raise AggregatorError("pseudo-gradient and weights have different tensor names")
    if state is None:
        zeros = {n: np.zeros(np.shape(weights[n]), dtype=np.float64) for n in names}
        state = ServerOptState(m=zeros, v=dict(zeros), step=0)
    new_weights, new_m, new_v = {}, {}, {}
    for name in names:
        delta = np.asarray(pseudo_gradient[name], dtype=np.float64)
        m = beta1 * np.asarray(state.m[name], dtype=np.float64) + (1.0 - beta1) * delta
        v_old = np.asarray(state.v[name], dtype=np.float64)
        squared = delta * delta
        if kind == "adagrad":
            v = v_old + squared
        elif kind == "adam":
            v = beta2 * v_old + (1.0 - beta2) * squared
        else:  # yogi: v moves towards D^2 additively, not multiplicatively
            v = v_old - (1.0 - beta2) * squared * np.sign(v_old - squared)
        step = lr * m / (np.sqrt(v) + tau)
        new_weights[name] = (np.asarray(weights[name], dtype=np.float64) + step).astype(np.float32)
        new_m[name], new_v[name] = m, v
    return new_weights, ServerOptState(m=new_m, v=new_v, step=state.step + 1)


def fedadam_step(
    weights: Mapping[str, np.ndarray],
    pseudo_gradient: Mapping[str, np.ndarray],
    state: ServerOptState | None = None,
    *,
    lr: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
) -> tuple[Arrays, ServerOptState]:
    """One FedAdam server step. ``pseudo_gradient`` is the averaged delta (same shapes as weights).

    Returns
    -------
    (new_weights, new_state)
        ``state=None`` starts from zero moments.
    """
    return _server_adaptive_step("adam", weights, pseudo_gradient, state, lr, beta1, beta2, tau)


def fedyogi_step(
    weights: Mapping[str, np.ndarray],
    pseudo_gradient: Mapping[str, np.ndarray],
    state: ServerOptState | None = None,
    *,
    lr: float = 0.1,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
) -> tuple[Arrays, ServerOptState]:
    """One FedYogi server step (see :func:`fedadam_step`)."""
    return _server_adaptive_step("yogi", weights, pseudo_gradient, state, lr, beta1, beta2, tau)


def fedadagrad_step(
    weights: Mapping[str, np.ndarray],
    pseudo_gradient: Mapping[str, np.ndarray],
    state: ServerOptState | None = None,
    *,
    lr: float = 0.1,
    beta1: float = 0.9,
    tau: float = 1e-3,
) -> tuple[Arrays, ServerOptState]:
    """One FedAdagrad server step (see :func:`fedadam_step`; ``v`` accumulates ``D^2``)."""
    return _server_adaptive_step("adagrad", weights, pseudo_gradient, state, lr, beta1, 0.0, tau)


# ---------------------------------------------------------------------------------------------
# Strategy classes


@dataclass(frozen=True)
class FitFailure:
    """An institution that did not deliver a usable update (crash, timeout, bad hash...)."""

    institution: str
    reason: str


@dataclass(frozen=True)
class RoundAggregate:
    """Outcome of one aggregation.

    Attributes
    ----------
    weights : dict[str, np.ndarray]
        The new global weights (the old ones when nothing usable arrived).
    aggregated_update : dict[str, np.ndarray] or None
        The combined delta before the server step; ``None`` when the round kept the old model.
    used : tuple of str
        Client ids whose update entered the aggregate, sorted.
    excluded : dict[str, str]
        Client id -> reason (failure, invalid update, filtered out by a robust rule).
    metrics : dict[str, float]
    """

    weights: Arrays
    aggregated_update: Arrays | None
    used: tuple[str, ...]
    excluded: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)


class Strategy:
    """Base class: one method per step of a round (Flower style).

    clients train (with the rules' fit config) -> ``aggregate_fit``, which validates results, ``combine``\\ s
    the valid deltas and applies ``server_step``. Subclasses override ``combine`` (robust rules) or
    ``server_step`` (server optimizers).

    Parameters
    ----------
    server_lr : float
        Scale of the combined delta added to the global weights (1.0 = plain FedAvg).
    min_results : int
        Fewer valid results than this keep the global weights unchanged.
    fit_config : Mapping, optional
        Training-setting overrides every client applies each round (e.g. ``{"lr": 0.01}``); nodes read them
        from the bounty's rules (:meth:`fedcore.rules.RoundRules.fit_config`).
    """

    name: ClassVar[str] = "strategy"

    def __init__(self, *, server_lr: float = 1.0, min_results: int = 1, fit_config: Mapping[str, Any] | None = None):
        if not np.isfinite(server_lr) or server_lr <= 0:
            raise ConfigError(f"{self.name}: server_lr must be > 0, got {server_lr!r}")
        if min_results < 1:
            raise ConfigError(f"{self.name}: min_results must be >= 1, got {min_results!r}")
        self.server_lr = float(server_lr)
        self.min_results = int(min_results)
        self.fit_config = dict(fit_config or {})

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({params})"

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor settings (recorded with results)."""
        return {"server_lr": self.server_lr, "min_results": self.min_results, "fit_config": dict(self.fit_config)}

    # -- round steps -----------------------------------------------------------------------------

    def combine(self, results: Sequence[Update]) -> tuple[Arrays, list[int]]:
        """Combine valid deltas; returns the combined delta and the indices of the results used.

        The base rule is FedAvg weighted by ``num_samples``.
        """
        return fedavg([r.arrays for r in results], [r.num_samples for r in results]), list(range(len(results)))

    def server_step(self, global_weights: Mapping[str, np.ndarray], combined: Arrays) -> Arrays:
        """New global weights from the combined delta: ``w + server_lr * delta``."""
        return {
            name: (
                np.asarray(global_weights[name], dtype=np.float64) + self.server_lr * combined[name].astype(np.float64)
            ).astype(np.float32)
            for name in global_weights
        }

    def aggregate_fit(
        self,
        server_round: int,
        global_weights: Mapping[str, np.ndarray],
        results: Sequence[Update],
        failures: Sequence[FitFailure] = (),
    ) -> RoundAggregate:
        """Validate, combine and apply one round's results; never raises on bad client input."""
        excluded = {f.institution: f"failed: {f.reason}" for f in failures}
        valid = self._validate(global_weights, results, excluded)
        if len(valid) < self.min_results:
            for r in valid:
                excluded[r.institution] = f"too few valid results ({len(valid)} < {self.min_results})"
            return RoundAggregate(
                weights={n: np.asarray(a, dtype=np.float32).copy() for n, a in global_weights.items()},
                aggregated_update=None,
                used=(),
                excluded=excluded,
                metrics={"n_used": 0.0, "kept_global": 1.0},
            )
        combined, used_index = self.combine(valid)
        used_set = set(used_index)
        for i, r in enumerate(valid):
            if i not in used_set:
                excluded[r.institution] = f"not selected by {self.name}"
        new_weights = self.server_step(global_weights, combined)
        used = tuple(sorted(valid[i].institution for i in used_index))
        return RoundAggregate(
            weights=new_weights,
            aggregated_update=combined,
            used=used,
            excluded=excluded,
            metrics={"n_used": float(len(used)), "kept_global": 0.0},
        )

    def aggregate(
        self,
        global_weights: Mapping[str, np.ndarray],
        results: Sequence[Update],
        failures: Sequence[FitFailure] = (),
        server_round: int = 0,
    ) -> Arrays:
        """New global weights only (see :meth:`aggregate_fit` for the full report)."""
        return self.aggregate_fit(server_round, global_weights, results, failures).weights

    # -- state (server optimizers) ---------------------------------------------------------------

    def state_dict(self) -> Arrays:
        """Arrays a restart needs to resume exactly (empty for stateless strategies)."""
        return {}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if state:
            raise AggregatorError(f"{self.name} has no state to load")

    def reset(self) -> None:
        """Forget any server state (start of a new training run)."""

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _validate(
        global_weights: Mapping[str, np.ndarray], results: Sequence[Update], excluded: dict[str, str]
    ) -> list[Update]:
        counts: dict[str, int] = {}
        for r in results:
            counts[r.institution] = counts.get(r.institution, 0) + 1
        valid = []
        # Canonical order: the aggregate must not depend on arrival order.
        for r in sorted(results, key=lambda r: str(r.institution)):
            reason = _invalid_reason(global_weights, r)
            if counts[r.institution] > 1:
                reason = "duplicate client id in this round"
            if reason:
                excluded[r.institution] = reason
            else:
                valid.append(r)
        return valid


def _invalid_reason(global_weights: Mapping[str, np.ndarray], result: Update) -> str | None:
    if isinstance(result.num_samples, bool) or not isinstance(result.num_samples, int | np.integer):
        return "num_samples is not an integer"
    if result.num_samples <= 0:
        return "num_samples must be positive"
    if set(result.arrays) != set(global_weights):
        return "update tensors do not match the model"
    for name, reference in global_weights.items():
        array = np.asarray(result.arrays[name])
        if array.shape != np.shape(reference):
            return f"tensor {name!r} has shape {array.shape}, expected {np.shape(reference)}"
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            return f"tensor {name!r} is not finite numeric"
    return None


class FedAvg(Strategy):
    """FedAvg: sample-weighted mean of deltas, applied with ``server_lr`` (default 1)."""

    name = "fedavg"


class FedProx(FedAvg):
    """FedProx (Li et al. 2020): FedAvg aggregation; clients add ``mu/2 ||w - w_global||^2``.

    Parameters
    ----------
    mu : float
        Proximal weight every client trains with, as ``fedprox_mu`` (:meth:`fedcore.rules.RoundRules.fit_config`).
    """

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01, **kwargs: Any):
        super().__init__(**kwargs)
        if not np.isfinite(mu) or mu < 0:
            raise ConfigError(f"fedprox: mu must be >= 0, got {mu!r}")
        self.mu = float(mu)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "mu": self.mu}


class _FedOpt(FedAvg):
    """FedAvg pseudo-gradient followed by an adaptive server optimizer (Reddi et al. 2021)."""

    kind: ClassVar[str] = ""

    def __init__(
        self, *, server_lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3, **kwargs: Any
    ):
        super().__init__(server_lr=server_lr, **kwargs)
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ConfigError(f"{self.name}: betas must be in [0, 1)")
        if not tau > 0:
            raise ConfigError(f"{self.name}: tau must be > 0")
        self.beta1, self.beta2, self.tau = float(beta1), float(beta2), float(tau)
        self.state: ServerOptState | None = None

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "beta1": self.beta1, "beta2": self.beta2, "tau": self.tau}

    def server_step(self, global_weights: Mapping[str, np.ndarray], combined: Arrays) -> Arrays:
        new_weights, self.state = _server_adaptive_step(
            self.kind, global_weights, combined, self.state, self.server_lr, self.beta1, self.beta2, self.tau
        )
        return new_weights

    def reset(self) -> None:
        self.state = None

    def state_dict(self) -> Arrays:
        if self.state is None:
            return {}
        out: Arrays = {f"m/{n}": a for n, a in self.state.m.items()}
        out.update({f"v/{n}": a for n, a in self.state.v.items()})
        out["step"] = np.asarray(self.state.step, dtype=np.int64)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if not state:
            self.state = None
            return
        try:
            m = {k[2:]: np.asarray(a, dtype=np.float64) for k, a in state.items() if k.startswith("m/")}
            v = {k[2:]: np.asarray(a, dtype=np.float64) for k, a in state.items() if k.startswith("v/")}
            step = int(np.asarray(state["step"]))
        except (KeyError, TypeError, ValueError):
            raise AggregatorError(f"{self.name}: malformed optimizer state") from None
        if set(m) != set(v):
            raise AggregatorError(f"{self.name}: optimizer state has unmatched m/v tensors")
        self.state = ServerOptState(m=m, v=v, step=step)


class FedAdam(_FedOpt):
    """FedAdam: Adam on the server over the averaged delta."""

    name = "fedadam"
    kind = "adam"


class FedYogi(_FedOpt):
    """FedYogi: Yogi on the server (second moment grows additively, more stable than Adam)."""

    name = "fedyogi"
    kind = "yogi"


class FedAdagrad(_FedOpt):
    """FedAdagrad: Adagrad on the server (``beta2`` is unused)."""

    name = "fedadagrad"
    kind = "adagrad"


class Median(Strategy):
    """Coordinate-wise median of deltas (unweighted; robust to a minority of outliers)."""

    name = "median"

    def combine(self, results: Sequence[Update]) -> tuple[Arrays, list[int]]:
        return coordinate_median([r.arrays for r in results]), list(range(len(results)))


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean of deltas.

    Parameters
    ----------
    trim_fraction : float in [0, 0.5)
        Share of values dropped at each end, per coordinate.
    """

    name = "trimmed_mean"

    def __init__(self, *, trim_fraction: float = 0.2, **kwargs: Any):
        super().__init__(**kwargs)
        if not 0.0 <= trim_fraction < 0.5:
            raise ConfigError(f"trimmed_mean: trim_fraction must be in [0, 0.5), got {trim_fraction!r}")
        self.trim_fraction = float(trim_fraction)

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "trim_fraction": self.trim_fraction}

    def combine(self, results: Sequence[Update]) -> tuple[Arrays, list[int]]:
        return trimmed_mean([r.arrays for r in results], self.trim_fraction), list(range(len(results)))


class Krum(Strategy):
    """Krum: keep the single most central delta.

    Parameters
    ----------
    n_byzantine : int
        Attackers to tolerate (``f``); Krum's guarantee needs ``k > 2f + 2`` results.
    """

    name = "krum"

    def __init__(self, *, n_byzantine: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        if not isinstance(n_byzantine, int) or n_byzantine < 0:
            raise ConfigError(f"{self.name}: n_byzantine must be a non-negative integer, got {n_byzantine!r}")
        self.n_byzantine = n_byzantine

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "n_byzantine": self.n_byzantine}

    def combine(self, results: Sequence[Update]) -> tuple[Arrays, list[int]]:
        chosen = krum_select([r.arrays for r in results], self.n_byzantine, 1)
        best = int(chosen[0])
        return {n: np.asarray(a, dtype=np.float32).copy() for n, a in results[best].arrays.items()}, [best]


class MultiKrum(Krum):
    """Multi-Krum: sample-weighted FedAvg over the ``n_selected`` most central deltas.

    Parameters
    ----------
    n_byzantine : int
    n_selected : int, optional
        Defaults to ``k - n_byzantine``.
    """

    name = "multikrum"

    def __init__(self, *, n_byzantine: int = 1, n_selected: int | None = None, **kwargs: Any):
        super().__init__(n_byzantine=n_byzantine, **kwargs)
        if n_selected is not None and (not isinstance(n_selected, int) or n_selected < 1):
            raise ConfigError(f"multikrum: n_selected must be a positive integer, got {n_selected!r}")
        self.n_selected = n_selected

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "n_selected": self.n_selected}

    def combine(self, results: Sequence[Update]) -> tuple[Arrays, list[int]]:
        k = len(results)
        m = k - self.n_byzantine if self.n_selected is None else min(self.n_selected, k)
        chosen = sorted(int(i) for i in krum_select([r.arrays for r in results], self.n_byzantine, max(1, m)))
        picked = [results[i] for i in chosen]
        return fedavg([r.arrays for r in picked], [r.num_samples for r in picked]), chosen


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad, Median, TrimmedMean, Krum, MultiKrum)
}


def make_strategy(name: str, **kwargs: Any) -> Strategy:
    """Build a strategy by name (case and ``-``/``_`` insensitive), e.g. ``make_strategy("FedAdam", server_lr=0.01)``.

    Known names: fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed_mean, krum, multikrum.
    """
    key = str(name).lower().replace("-", "_")
    cls = STRATEGIES.get(key) or STRATEGIES.get(key.replace("_", ""))
    if cls is None:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"bad parameters for strategy {name!r}: {error}") from None
