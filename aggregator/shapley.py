"""Contribution scoring: Shapley-value estimators over an abstract coalition utility.

In a federated round the *utility* ``v(S)`` of a coalition ``S`` of institutions is the validation
metric of the model obtained by aggregating only ``S``'s updates onto the round's global model, and
``v(empty)`` is the global model's own metric. Everything here is generic over that function: players
are ``0 .. n-1`` and ``utility`` maps a ``frozenset[int]`` to a float. The learning-specific utility is
plugged in by the aggregator.

Conventions
-----------
- Every estimator is a pure function ``f(n, utility, *, seed, ...) -> ContributionEstimate`` (the
  alignment score takes update arrays instead of a utility). Randomness comes only from ``seed``;
  deterministic estimators accept ``seed`` for a uniform interface and ignore it.
- The utility must be deterministic (a fixed model scored on a fixed validation set is).
  Each call wraps it in a :class:`CachedUtility`, so a coalition is evaluated at most once; pass a
  ``CachedUtility`` yourself to share evaluations between several estimators in the same round.
- ``ContributionEstimate.evaluations`` counts the distinct coalitions whose utility the call had to
  compute (empty and grand coalitions included). Coalitions already in a shared cache cost nothing and
  are not counted.
- Final means are summed with ``math.fsum`` (correctly rounded) so a recomputation on another machine
  gives the same floats, which matters once they are turned into on-chain integers.

Estimators (registry names in brackets)
---------------------------------------
exact [exact]          all ``2**n`` coalitions; refused above ``max_players`` (default 14).
permutation MC [mc]    mean marginal contribution over random permutations.
truncated MC [tmc]     Ghorbani & Zou (2019): the scan of a permutation stops once the prefix is
                       within ``truncation_tolerance * |v(N) - v(empty)|`` of ``v(N)``.
GTG [gtg]              Liu et al. (2022): guided permutations (each player leads once per sweep;
                       by default rotations of a random cycle plus their mirror images, see
                       ``sampling``), within-round truncation as TMC, and between-round truncation
                       (all zeros when ``|v(N) - v(empty)|`` < ``round_truncation_threshold``);
                       with ``n <= exact_up_to``, exact Shapley after that test.
                       The default estimator.
leave-one-out [loo]    ``v(N) - v(N \\ {i})``.
gain [gain]            ``v({i}) - v(empty)``: each update's validation gain alone.
alignment [alignment]  cosine of each flattened update with the weighted aggregate update.

Monte Carlo estimators stop by convergence: once at least ``min_permutations`` permutations are done,
at the end of a sweep, they stop when ``max_i std_error_i <= convergence_tolerance * |v(N) - v(empty)|``
(default tolerance ``0.75 / n``); otherwise they stop at ``max_permutations`` or when the next
permutation would need an evaluation beyond ``max_evaluations`` (then ``converged`` is False).

Per-round values can be made to sum to ``v(N) - v(empty)`` without crossing zero with
:func:`normalize_to_total`, summed over rounds with :func:`cumulative_values`, and turned into on-chain
``int256`` with :func:`to_fixed_point`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import numpy as np

from fedcore.errors import AggregatorError

Utility = Callable[[frozenset[int]], float]

#: Above this many players the exact estimator refuses (2**14 = 16384 evaluations).
EXACT_MAX_PLAYERS = 14

# Defaults of the sampling estimators, chosen on a synthetic non-additive FL-like game (n = 10, game
# seeds 0-7; checked on held-out seeds, and at n = 100): with them GTG reaches Spearman >= 0.95 against
# exact Shapley with at most 102 of the 1024 exact evaluations in most runs. See the tests' module doc.
DEFAULT_TRUNCATION_TOLERANCE = 0.05
#: The convergence tolerance by default is this fraction of an equal share: ``0.75 / n`` of the total.
DEFAULT_CONVERGENCE_SHARE = 0.75
DEFAULT_MIN_PERMUTATIONS = 10
DEFAULT_MAX_PERMUTATIONS = 1000
DEFAULT_ROUND_TRUNCATION_THRESHOLD = 1e-4
DEFAULT_GTG_SAMPLING = "cycle"

INT256_MIN = -(2**255)
INT256_MAX = 2**255 - 1


# ---------------------------------------------------------------------------------------------------
# Result and cache
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContributionEstimate:
    """One estimator's scores for the ``n`` players of a round.

    Attributes
    ----------
    values : np.ndarray, shape (n,)
        Estimated contribution of each player, in utility units (for ``alignment``: cosines).
    std_errors : np.ndarray, shape (n,)
        Standard error of each value (``std(marginals, ddof=1) / sqrt(permutations)`` for Monte Carlo,
        zeros for deterministic methods, ``inf`` where a player has fewer than two samples). It does not
        include the bias of truncation.
    evaluations : int
        Distinct coalitions whose utility this call computed, empty and grand coalitions included.
    method : str
        Registry name of the estimator (``"exact"``, ``"mc"``, ...).
    permutations : int
        Completed permutations (0 for methods that do not sample).
    converged : bool
        False when a Monte Carlo estimator stopped on ``max_permutations`` or ``max_evaluations``
        before its convergence tolerance was met. Always True for deterministic methods.
    grand_value : float
        ``v(N)`` (NaN for ``alignment``).
    empty_value : float
        ``v(empty)`` (NaN for ``alignment``).
    seed : int or None
        The seed used (None for deterministic methods).
    samples : np.ndarray, shape (permutations, n), or None
        Marginal contribution of each player in each completed permutation (0 after a truncation);
        None for methods that do not sample.
    form : LinearForm or None
        The values as a weighted sum of the coalition utilities the call used (None for ``alignment``):
        what lets :func:`row_values` split each value over the validation rows.
    row_std_errors : np.ndarray, shape (n,), or None
        Standard error of each value over the validation rows (the utility's own sampling error), when
        the caller computed it (:func:`row_values`); None otherwise.
    """

    values: np.ndarray
    std_errors: np.ndarray
    evaluations: int
    method: str
    permutations: int = 0
    converged: bool = True
    grand_value: float = math.nan
    empty_value: float = math.nan
    seed: int | None = None
    samples: np.ndarray | None = field(default=None, repr=False)
    form: LinearForm | None = field(default=None, repr=False, compare=False)
    row_std_errors: np.ndarray | None = None

    def __post_init__(self) -> None:
        for name in ("values", "std_errors", "samples", "row_std_errors"):
            array = getattr(self, name)
            if array is not None:
                array = np.array(array, dtype=np.float64)  # a private copy, then frozen
                array.setflags(write=False)
                object.__setattr__(self, name, array)

    @property
    def total(self) -> float:
        """``v(N) - v(empty)``: what efficient values sum to."""
        return self.grand_value - self.empty_value


@dataclass(frozen=True)
class LinearForm:
    """An estimate's values as a weighted sum of coalition utilities: ``values[i] = sum_k weights[k, i] * v(S_k)``.

    Every estimator but ``alignment`` is linear in the utility, once its sampling (and truncation) is fixed. When the
    utility is a mean over validation rows, the same weights applied to each row's utility split every value over
    the rows (:func:`row_values`), whose spread is the value's standard error over the validation set.

    Attributes
    ----------
    coalitions : tuple of frozenset[int], length k
    weights : np.ndarray, shape (k, n)
    """

    coalitions: tuple[frozenset[int], ...]
    weights: np.ndarray

    def __post_init__(self) -> None:
        weights = np.array(self.weights, dtype=np.float64)
        if weights.ndim != 2 or weights.shape[0] != len(self.coalitions):
            raise AggregatorError(f"a linear form needs one weight row per coalition, got {weights.shape} for "
                                  f"{len(self.coalitions)} coalitions")
        weights.setflags(write=False)
        object.__setattr__(self, "weights", weights)

    @classmethod
    def of(cls, n: int, terms: Mapping[frozenset[int], np.ndarray]) -> LinearForm:
        """From coalition -> weight vector (shape (n,)); coalitions in a canonical order (size, then members)."""
        order = sorted(terms, key=lambda c: (len(c), sorted(c)))
        weights = np.array([terms[c] for c in order], dtype=np.float64).reshape(len(order), n)
        return cls(tuple(order), weights)


def row_values(form: LinearForm, per_row: Callable[[frozenset[int]], np.ndarray]) -> np.ndarray:
    """Each value split over the validation rows: ``sum_k weights[k, i] * per_row(coalitions[k])[j]``.

    Parameters
    ----------
    form : LinearForm
        The estimate's :attr:`ContributionEstimate.form`.
    per_row : callable
        ``coalition -> np.ndarray, shape (m,)``: each validation row's share of ``v(coalition)``, in the units whose
        (population-weighted) mean is the utility (:func:`fedcore.metrics.row_scores`).

    Returns
    -------
    np.ndarray, shape (n, m)
        Row ``i`` is player ``i``'s value row by row; its (population) mean is the value. Coalitions are summed in
        the form's order: the same floats on every run.
    """
    n = form.weights.shape[1]
    total: np.ndarray | None = None
    for coalition, weight in zip(form.coalitions, form.weights):
        if not weight.any():
            continue
        term = weight[:, None] * np.asarray(per_row(coalition), dtype=np.float64)[None, :]
        total = term if total is None else total + term
    if total is None:
        return np.zeros((n, np.asarray(per_row(frozenset())).size))
    return total


class CachedUtility:
    """Memoise a coalition utility within a round and count distinct evaluations.

    Parameters
    ----------
    utility : callable
        ``utility(frozenset[int]) -> float``; must be deterministic.
    n : int, optional
        Number of players; when given, coalitions with members outside ``0 .. n-1`` are rejected.

    Attributes
    ----------
    evaluations : int
        Distinct coalitions evaluated so far (calls of the wrapped utility).
    calls : int
        Calls of this wrapper, cached or not.
    """

    def __init__(self, utility: Utility, *, n: int | None = None):
        if not callable(utility):
            raise AggregatorError(f"utility must be callable, got {type(utility).__name__}")
        self._utility = utility
        self.n = n
        self._values: dict[frozenset[int], float] = {}
        self.calls = 0

    @property
    def evaluations(self) -> int:
        return len(self._values)

    def __contains__(self, coalition: Iterable[int]) -> bool:
        return frozenset(coalition) in self._values

    def __call__(self, coalition: Iterable[int]) -> float:
        key = coalition if isinstance(coalition, frozenset) else frozenset(coalition)
        self.calls += 1
        if key in self._values:
            return self._values[key]
        if self.n is not None and any(not (0 <= p < self.n) for p in key):
            raise AggregatorError(f"coalition {sorted(key)} has players outside 0..{self.n - 1}")
        raw = self._utility(key)
        try:
            value = float(raw)
        except (TypeError, ValueError) as error:
            raise AggregatorError(f"utility returned a non-number for coalition {sorted(key)}: {raw!r}") from error
        if not math.isfinite(value):
            raise AggregatorError(f"utility returned {value} for coalition {sorted(key)}")
        self._values[key] = value
        return value


def _check_players(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise AggregatorError(f"the number of players must be a positive integer, got {n!r}")
    return int(n)


def _check_seed(seed: Any) -> int:
    # An explicit integer: reproducibility invariant (no None, no global RNG state).
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AggregatorError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _cache_for(utility: Utility | CachedUtility, n: int) -> CachedUtility:
    if isinstance(utility, CachedUtility):
        if utility.n is not None and utility.n != n:
            raise AggregatorError(f"the shared CachedUtility is for {utility.n} players, not {n}")
        return utility
    return CachedUtility(utility, n=n)


def _fsum_columns(rows: np.ndarray) -> np.ndarray:
    """Correctly rounded column sums of a (m, n) array: the same floats on every machine."""
    return np.array([math.fsum(column) for column in rows.T], dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# Exact and one-pass estimators
# ---------------------------------------------------------------------------------------------------


def exact_shapley(
    n: int, utility: Utility, *, seed: int | None = None, max_players: int = EXACT_MAX_PLAYERS
) -> ContributionEstimate:
    """Exact Shapley values from all ``2**n`` coalitions.

    ``phi_i = sum_{S not containing i} |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S))``.

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``.
    seed : int, optional
        Ignored (deterministic); accepted for a uniform interface.
    max_players : int
        Refuse above this many players (default 14, i.e. at most 16384 evaluations).

    Returns
    -------
    ContributionEstimate
        ``evaluations == 2**n`` with a fresh cache; ``std_errors`` are zeros.

    Raises
    ------
    AggregatorError
        If ``n > max_players``.
    """
    n = _check_players(n)
    if n > max_players:
        raise AggregatorError(
            f"exact Shapley needs 2**{n} = {2**n} utility evaluations for {n} players, above the limit of "
            f"{max_players} players; use 'tmc' or 'gtg', or raise max_players"
        )
    cache = _cache_for(utility, n)
    start = cache.evaluations
    # Coalition values indexed by bit mask: bit i set <=> player i in the coalition.
    values_by_mask = np.empty(2**n, dtype=np.float64)
    for mask in range(2**n):
        values_by_mask[mask] = cache(frozenset(i for i in range(n) if mask >> i & 1))
    masks = np.arange(2**n)
    sizes = np.array([bin(m).count("1") for m in range(2**n)])
    # Shapley weight of a coalition of size s not containing i.
    weight_by_size = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    shapley = np.empty(n, dtype=np.float64)
    coefficients = np.zeros((2**n, n))  # the weight of v(mask) in each player's value
    for player in range(n):
        bit = 1 << player
        without = masks[(masks & bit) == 0]
        terms = weight_by_size[sizes[without]] * (values_by_mask[without | bit] - values_by_mask[without])
        shapley[player] = math.fsum(terms)
        coefficients[without | bit, player] += weight_by_size[sizes[without]]
        coefficients[without, player] -= weight_by_size[sizes[without]]
    form = LinearForm.of(n, {frozenset(i for i in range(n) if mask >> i & 1): coefficients[mask]
                             for mask in range(2**n)})
    return ContributionEstimate(
        values=shapley,
        std_errors=np.zeros(n),
        evaluations=cache.evaluations - start,
        method="exact",
        grand_value=float(values_by_mask[-1]),
        empty_value=float(values_by_mask[0]),
        form=form,
    )


def leave_one_out(n: int, utility: Utility, *, seed: int | None = None) -> ContributionEstimate:
    """Leave-one-out values ``v(N) - v(N \\ {i})``.

    Cheap (``n + 2`` evaluations, ``v(empty)`` included for the total) but not efficient, and blind to
    redundancy: two identical updates each get about zero, since either one alone does the job.

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``.
    seed : int, optional
        Ignored (deterministic).
    """
    n = _check_players(n)
    cache = _cache_for(utility, n)
    start = cache.evaluations
    everyone = frozenset(range(n))
    empty, grand = cache(frozenset()), cache(everyone)
    values = np.array([grand - cache(everyone - {i}) for i in range(n)])
    terms = {everyone: np.ones(n), **{everyone - {i}: -np.eye(n)[i] for i in range(n)}}
    return ContributionEstimate(
        values=values,
        std_errors=np.zeros(n),
        evaluations=cache.evaluations - start,
        method="loo",
        grand_value=grand,
        empty_value=empty,
        form=LinearForm.of(n, terms),
    )


def validation_gain(n: int, utility: Utility, *, seed: int | None = None) -> ContributionEstimate:
    """Validation gain of each update alone: ``v({i}) - v(empty)``.

    ``n + 2`` evaluations (``v(N)`` included for the total). Not efficient, blind to complementarity.

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``.
    seed : int, optional
        Ignored (deterministic).
    """
    n = _check_players(n)
    cache = _cache_for(utility, n)
    start = cache.evaluations
    empty, grand = cache(frozenset()), cache(frozenset(range(n)))
    values = np.array([cache(frozenset({i})) - empty for i in range(n)])
    terms = {frozenset(): -np.ones(n), **{frozenset({i}): np.eye(n)[i] for i in range(n)}}
    return ContributionEstimate(
        values=values,
        std_errors=np.zeros(n),
        evaluations=cache.evaluations - start,
        method="gain",
        grand_value=grand,
        empty_value=empty,
        form=LinearForm.of(n, terms),
    )


# ---------------------------------------------------------------------------------------------------
# Permutation sampling (mc, tmc, gtg share one loop)
# ---------------------------------------------------------------------------------------------------

#: How permutations are drawn (the ``sampling`` parameter of mc, tmc and gtg).
SAMPLING_SCHEMES = ("random", "leader", "cycle")


def _check_sampling_params(
    n: int,
    *,
    sampling: str,
    truncation_tolerance: float,
    convergence_tolerance: float | None,
    min_permutations: int,
    max_permutations: int,
    max_evaluations: int | None,
) -> None:
    if sampling not in SAMPLING_SCHEMES:
        raise AggregatorError(f"unknown sampling {sampling!r}; choose one of {list(SAMPLING_SCHEMES)}")
    tolerances = (("truncation_tolerance", truncation_tolerance), ("convergence_tolerance", convergence_tolerance))
    for name, value in tolerances:
        if name == "convergence_tolerance" and value is None:
            continue  # the default, 0.75 / n
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise AggregatorError(f"{name} must be a finite number >= 0, got {value!r}")
    if truncation_tolerance >= 1:
        raise AggregatorError(
            f"truncation_tolerance must be < 1 (a fraction of v(N) - v(empty)), got {truncation_tolerance}"
        )
    for name, value in (("min_permutations", min_permutations), ("max_permutations", max_permutations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise AggregatorError(f"{name} must be a positive integer, got {value!r}")
    if min_permutations > max_permutations:
        raise AggregatorError(f"min_permutations ({min_permutations}) exceeds max_permutations ({max_permutations})")
    if max_evaluations is not None:
        if isinstance(max_evaluations, bool) or not isinstance(max_evaluations, (int, np.integer)):
            raise AggregatorError(f"max_evaluations must be an integer or None, got {max_evaluations!r}")
        # One full permutation needs at most n + 1 distinct coalitions (empty, n - 1 prefixes, grand):
        # with fewer, not even one permutation could complete.
        if max_evaluations < n + 1:
            raise AggregatorError(
                f"max_evaluations must be at least n + 1 = {n + 1} for {n} players, got {max_evaluations}"
            )


def _permutation_stream(n: int, rng: np.random.Generator, sampling: str) -> Iterator[np.ndarray]:
    """Endless permutations of ``0..n-1``, in sweeps; see ``sampling`` in :func:`monte_carlo_shapley`."""
    while True:
        if sampling == "random":
            yield rng.permutation(n)
        elif sampling == "leader":
            for leader in rng.permutation(n):
                others = np.delete(np.arange(n), leader)
                yield np.concatenate(([leader], rng.permutation(others)))
        else:  # "cycle"
            order = rng.permutation(n)
            for base in (order, order[::-1]):
                for shift in range(n):
                    yield np.roll(base, -shift)


def _sweep_length(n: int, sampling: str) -> int:
    return {"random": 1, "leader": n, "cycle": 2 * n}[sampling]


def _scan_permutation(
    permutation: np.ndarray,
    cache: CachedUtility,
    *,
    empty: float,
    grand: float,
    truncation_threshold: float,
    may_evaluate: Callable[[], bool],
) -> tuple[np.ndarray, int] | None:
    """Marginal contributions of one permutation and how many of its players were added before a truncation;
    None if the evaluation budget ran out mid-scan.

    Truncation rule: before adding the next player, if ``|v(N) - v(prefix)| < truncation_threshold``
    the remaining players' marginals are set to 0 and the scan stops.
    """
    marginals = np.zeros(len(permutation))
    prefix: set[int] = set()
    previous = empty
    for player in permutation:
        if abs(grand - previous) < truncation_threshold:
            break
        prefix.add(int(player))
        coalition = frozenset(prefix)
        if coalition not in cache and not may_evaluate():
            return None  # an incomplete permutation would bias the means: drop it
        value = cache(coalition)
        marginals[player] = value - previous
        previous = value
    return marginals, len(prefix)


def _permutation_form(n: int, scans: Sequence[tuple[np.ndarray, int]]) -> LinearForm:
    """The mean of the scans' marginals as a weighted sum of the prefixes' utilities."""
    terms: dict[frozenset[int], np.ndarray] = {}
    share = 1.0 / len(scans) if scans else 0.0
    for permutation, depth in scans:
        before: frozenset[int] = frozenset()
        for player in permutation[:depth]:
            after = before | {int(player)}
            terms.setdefault(after, np.zeros(n))[player] += share
            terms.setdefault(before, np.zeros(n))[player] -= share
            before = after
    return LinearForm.of(n, terms)


def _permutation_estimate(
    n: int,
    utility: Utility,
    *,
    method: str,
    seed: int,
    sampling: str,
    truncation_tolerance: float,
    convergence_tolerance: float | None,
    min_permutations: int,
    max_permutations: int,
    max_evaluations: int | None,
    round_truncation_threshold: float | None = None,
) -> ContributionEstimate:
    n = _check_players(n)
    seed = _check_seed(seed)
    if convergence_tolerance is None:
        convergence_tolerance = DEFAULT_CONVERGENCE_SHARE / n
    _check_sampling_params(
        n,
        sampling=sampling,
        truncation_tolerance=truncation_tolerance,
        convergence_tolerance=convergence_tolerance,
        min_permutations=min_permutations,
        max_permutations=max_permutations,
        max_evaluations=max_evaluations,
    )
    cache = _cache_for(utility, n)
    start = cache.evaluations
    empty, grand = cache(frozenset()), cache(frozenset(range(n)))
    total_gain = abs(grand - empty)

    def result(
        values: np.ndarray, std_errors: np.ndarray, samples: np.ndarray, converged: bool, form: LinearForm
    ) -> ContributionEstimate:
        return ContributionEstimate(
            values=values,
            std_errors=std_errors,
            evaluations=cache.evaluations - start,
            method=method,
            permutations=len(samples),
            converged=converged,
            grand_value=grand,
            empty_value=empty,
            seed=seed,
            samples=samples,
            form=form,
        )

    # GTG between-round truncation: the round changed the model too little to be worth scoring.
    if round_truncation_threshold is not None and total_gain < round_truncation_threshold:
        return result(np.zeros(n), np.zeros(n), np.zeros((0, n)), True, LinearForm.of(n, {}))

    permutations = _permutation_stream(n, np.random.default_rng(seed), sampling)
    # Guided schemes are balanced (by leader, by position) only after whole sweeps: test only then.
    sweep = _sweep_length(n, sampling)
    truncation_threshold = truncation_tolerance * total_gain  # 0 disables truncation (strict <)
    target = convergence_tolerance * total_gain

    def may_evaluate() -> bool:
        return max_evaluations is None or cache.evaluations - start < max_evaluations

    rows: list[np.ndarray] = []
    scans: list[tuple[np.ndarray, int]] = []
    # Welford running mean and sum of squared deviations: O(n) per permutation for the stopping test.
    mean, squares = np.zeros(n), np.zeros(n)
    converged = False
    while len(rows) < max_permutations:
        permutation = next(permutations)
        scan = _scan_permutation(
            permutation,
            cache,
            empty=empty,
            grand=grand,
            truncation_threshold=truncation_threshold,
            may_evaluate=may_evaluate,
        )
        if scan is None:
            break
        row, depth = scan
        rows.append(row)
        scans.append((permutation, depth))
        count = len(rows)
        delta = row - mean
        mean += delta / count
        squares += delta * (row - mean)
        if count >= max(min_permutations, 2) and count % sweep == 0:
            if np.sqrt(squares / (count - 1) / count).max() <= target:
                converged = True
                break

    if not converged and len(rows) > sweep:
        # Stopped by a cap mid-sweep: a partial sweep is unbalanced (some leaders or positions, and for
        # "cycle" their mirrors, missing) and measurably hurts, so keep whole sweeps only.
        del rows[len(rows) - len(rows) % sweep :]
        del scans[len(scans) - len(scans) % sweep :]
    samples = np.array(rows)
    count = len(rows)
    values = _fsum_columns(samples) / count
    if count >= 2:
        deviations = samples - values
        std_errors = np.sqrt(_fsum_columns(deviations * deviations) / (count - 1) / count)
    else:
        std_errors = np.full(n, math.inf)
    return result(values, std_errors, samples, converged, _permutation_form(n, scans))


def monte_carlo_shapley(
    n: int,
    utility: Utility,
    *,
    seed: int,
    sampling: str = "random",
    convergence_tolerance: float | None = None,
    min_permutations: int = DEFAULT_MIN_PERMUTATIONS,
    max_permutations: int = DEFAULT_MAX_PERMUTATIONS,
    max_evaluations: int | None = None,
) -> ContributionEstimate:
    """Permutation Monte Carlo Shapley: mean marginal contribution over permutations.

    Unbiased under every sampling scheme (each permutation is uniformly distributed), and efficient per
    permutation (a permutation's marginals sum to ``v(N) - v(empty)``), hence the mean is efficient too,
    up to float rounding.

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``, deterministic.
    seed : int
        Seed of the permutations (required: reproducibility).
    sampling : {"random", "leader", "cycle"}
        ``"random"``: independent uniform permutations. ``"leader"``: sweeps of ``n`` permutations in
        which every player leads once (leaders in random order), the rest independent and uniform (GTG's
        guided sampling). ``"cycle"``: sweeps of ``2n`` permutations from one random order: its ``n``
        rotations (every player leads once, and takes every position once), then the ``n`` rotations of
        the reversed order (antithetic: position ``k`` mirrored to ``n - 1 - k``). All ``2n`` share the
        ``n(n-1) + 2`` coalitions that are arcs of that cycle, so the reversed half costs no evaluation.
    convergence_tolerance : float or None
        Stop once ``max_i std_error_i <= convergence_tolerance * |v(N) - v(empty)|``, tested after whole
        sweeps only. 0 disables the test. None (default): ``0.75 / n``, three quarters of an equal share,
        so the precision asked for follows the size of the shares (a fixed fraction of the total is
        too loose at ``n = 100`` and needlessly tight at ``n = 2``). The standard error treats permutations
        as independent; under ``"leader"`` and ``"cycle"`` they are negatively correlated, so it overstates
        the spread (by 1.2-1.5x and 1.6-3.8x on the synthetic game that chose the defaults): the test is
        conservative.
    min_permutations : int
        Permutations done before the stopping test applies (small samples under-estimate spread).
    max_permutations : int
        Hard cap on permutations.
    max_evaluations : int or None
        Cap on distinct utility evaluations in this call (empty and grand included); a permutation that
        would need one more is dropped and sampling stops. At least ``n + 1``. None: no cap. When a cap
        (this or ``max_permutations``) stops ``"leader"`` or ``"cycle"`` sampling after at least one whole
        sweep, the unfinished sweep is dropped too (its evaluations still count).

    Returns
    -------
    ContributionEstimate
        With ``samples`` of shape (permutations, n); ``converged`` False if a cap stopped sampling.
    """
    return _permutation_estimate(
        n,
        utility,
        method="mc",
        seed=seed,
        sampling=sampling,
        truncation_tolerance=0.0,
        convergence_tolerance=convergence_tolerance,
        min_permutations=min_permutations,
        max_permutations=max_permutations,
        max_evaluations=max_evaluations,
    )


def truncated_monte_carlo_shapley(
    n: int,
    utility: Utility,
    *,
    seed: int,
    sampling: str = "random",
    truncation_tolerance: float = DEFAULT_TRUNCATION_TOLERANCE,
    convergence_tolerance: float | None = None,
    min_permutations: int = DEFAULT_MIN_PERMUTATIONS,
    max_permutations: int = DEFAULT_MAX_PERMUTATIONS,
    max_evaluations: int | None = None,
) -> ContributionEstimate:
    """Truncated Monte Carlo Shapley (TMC, Ghorbani & Zou 2019).

    Truncation rule (exact): while scanning a permutation, before adding the next player, if
    ``|v(N) - v(prefix)| < truncation_tolerance * |v(N) - v(empty)|`` then every remaining player of
    that permutation gets marginal 0 and the scan stops. The tolerance is relative to the round's total
    gain rather than to ``|v(N)|``, so it does not depend on the metric's offset (an accuracy of 0.9
    after a round that gained 0.01 would otherwise truncate at once). A truncated permutation's
    marginals sum to ``v(prefix) - v(empty)``, within ``truncation_tolerance * |v(N) - v(empty)|`` of the
    total: :func:`normalize_to_total` restores efficiency without moving a value across zero. Truncation
    biases late players towards 0 (a helpful and a harmful player that cancel out are both cut to 0).

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``, deterministic.
    seed : int
        Seed of the permutations (required: reproducibility).
    sampling : {"random", "leader", "cycle"}
        As in :func:`monte_carlo_shapley`; Ghorbani & Zou use ``"random"``.
    truncation_tolerance : float
        Fraction of ``|v(N) - v(empty)|`` in ``[0, 1)``; 0 gives plain permutation Monte Carlo.
    convergence_tolerance, min_permutations, max_permutations, max_evaluations
        As in :func:`monte_carlo_shapley`.
    """
    return _permutation_estimate(
        n,
        utility,
        method="tmc",
        seed=seed,
        sampling=sampling,
        truncation_tolerance=truncation_tolerance,
        convergence_tolerance=convergence_tolerance,
        min_permutations=min_permutations,
        max_permutations=max_permutations,
        max_evaluations=max_evaluations,
    )


def gtg_shapley(
    n: int,
    utility: Utility,
    *,
    seed: int,
    sampling: str = DEFAULT_GTG_SAMPLING,
    truncation_tolerance: float = DEFAULT_TRUNCATION_TOLERANCE,
    round_truncation_threshold: float = DEFAULT_ROUND_TRUNCATION_THRESHOLD,
    convergence_tolerance: float | None = None,
    min_permutations: int = DEFAULT_MIN_PERMUTATIONS,
    max_permutations: int = DEFAULT_MAX_PERMUTATIONS,
    max_evaluations: int | None = None,
    exact_up_to: int = 0,
) -> ContributionEstimate:
    """GTG-Shapley (Liu et al. 2022): guided, truncated permutation sampling with round skipping.

    - Guided permutations: in every sweep each player takes the first position once. The first
      positions carry most of the value on a saturating learning curve, so every player's is sampled
      evenly. ``sampling="leader"`` is the paper's scheme (rest of each permutation independent and
      uniform); the default ``"cycle"`` also gives every player every position once per sweep and adds
      the mirrored (antithetic) sweep for free, which at ``n = 10`` reaches the same rank agreement with
      exact Shapley in about half the evaluations (see :func:`monte_carlo_shapley`).
    - Within-round truncation: the rule of :func:`truncated_monte_carlo_shapley`.
    - Between-round truncation: if ``|v(N) - v(empty)| < round_truncation_threshold`` (absolute, in
      utility units) the round is not worth scoring: all values are 0, after 2 evaluations.

    Parameters
    ----------
    n : int
        Number of players.
    utility : callable
        ``utility(frozenset[int]) -> float``, deterministic.
    seed : int
        Seed of the permutations (required: reproducibility).
    sampling : {"cycle", "leader", "random"}
        As in :func:`monte_carlo_shapley`.
    truncation_tolerance : float
        Within-round truncation, a fraction of ``|v(N) - v(empty)|`` in ``[0, 1)``.
    round_truncation_threshold : float
        Between-round truncation, absolute in utility units (default 1e-4: a hundredth of a percentage
        point of accuracy). 0 disables it.
    convergence_tolerance, min_permutations, max_permutations, max_evaluations
        As in :func:`monte_carlo_shapley`.
    exact_up_to : int
        With ``n <= exact_up_to`` players, exact Shapley over all ``2**n`` coalitions (:func:`exact_shapley`,
        ``method == "exact"``, std errors 0) instead of sampling, after the between-round truncation test. At
        ``n = 4`` that is 16 evaluations where one guided sweep takes 14, and it has no sampling noise: players
        with identical updates get identical values, and redundant players share their value. 0 (default)
        always samples; at most :data:`EXACT_MAX_PLAYERS`.
    """
    _check_exact_up_to(exact_up_to)
    if (isinstance(round_truncation_threshold, bool) or not isinstance(round_truncation_threshold, (int, float))
            or not round_truncation_threshold >= 0):
        raise AggregatorError(f"round_truncation_threshold must be a number >= 0, got {round_truncation_threshold!r}")
    if _check_players(n) <= exact_up_to:
        return _truncated_exact(n, utility, round_truncation_threshold)
    return _permutation_estimate(
        n,
        utility,
        method="gtg",
        seed=seed,
        sampling=sampling,
        truncation_tolerance=truncation_tolerance,
        convergence_tolerance=convergence_tolerance,
        min_permutations=min_permutations,
        max_permutations=max_permutations,
        max_evaluations=max_evaluations,
        round_truncation_threshold=round_truncation_threshold,
    )


def _check_exact_up_to(exact_up_to: Any) -> None:
    if (isinstance(exact_up_to, bool) or not isinstance(exact_up_to, (int, np.integer))
            or not 0 <= exact_up_to <= EXACT_MAX_PLAYERS):
        raise AggregatorError(f"exact_up_to must be an integer in [0, {EXACT_MAX_PLAYERS}], got {exact_up_to!r}")


def _truncated_exact(n: int, utility: Utility, round_truncation_threshold: float) -> ContributionEstimate:
    """Exact Shapley behind GTG's between-round truncation (a round that gained too little is all zeros)."""
    cache = _cache_for(utility, n)
    start = cache.evaluations
    empty, grand = cache(frozenset()), cache(frozenset(range(n)))
    if abs(grand - empty) < round_truncation_threshold:
        return ContributionEstimate(values=np.zeros(n), std_errors=np.zeros(n), evaluations=cache.evaluations - start,
                                    method="exact", grand_value=grand, empty_value=empty)
    exact = exact_shapley(n, cache)
    return replace(exact, evaluations=cache.evaluations - start)


# ---------------------------------------------------------------------------------------------------
# Gradient alignment (no utility evaluations)
# ---------------------------------------------------------------------------------------------------


def _flatten_update(update: Any, keys: list[str] | None, index: int) -> np.ndarray:
    if isinstance(update, Mapping):
        if keys is not None and sorted(update) != keys:
            raise AggregatorError(f"update {index} has tensors {sorted(update)}, expected {keys}")
        parts = [np.asarray(update[k], dtype=np.float64).ravel() for k in sorted(update)]
        flat = np.concatenate(parts) if parts else np.zeros(0)
    else:
        flat = np.asarray(update, dtype=np.float64).ravel()
    if not np.all(np.isfinite(flat)):
        raise AggregatorError(f"update {index} contains NaN or Inf")
    return flat


def _exact_dot(a: np.ndarray, b: np.ndarray) -> float:
    # Elementwise products are exact IEEE operations; fsum rounds once: no BLAS-dependent last bits.
    return math.fsum(a * b)


def gradient_alignment(
    updates: Sequence[np.ndarray] | Sequence[Mapping[str, np.ndarray]] | np.ndarray,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
) -> ContributionEstimate:
    """Cosine of each flattened update with the weighted aggregate update.

    ``aggregate = sum_i w_i u_i / sum_i w_i`` and ``value_i = <u_i, aggregate> / (|u_i| |aggregate|)``,
    0 where either norm is 0. No utility evaluations; values lie in ``[-1, 1]`` and are not Shapley
    values (they do not sum to any total): normalize them yourself if you pay by them.

    Parameters
    ----------
    updates : sequence of n arrays (any shapes, same total size), or of n mappings name -> array
        Each player's update (new weights minus global weights). Mappings are flattened in sorted-name
        order and must all have the same names; an (n, d) array is read as n flat updates.
    weights : sequence of n floats, optional
        Aggregation weights (e.g. sample counts), finite, >= 0, positive sum. Default: equal.
    seed : int, optional
        Ignored (deterministic).

    Returns
    -------
    ContributionEstimate
        ``evaluations == 0``, zero ``std_errors``, NaN ``grand_value`` and ``empty_value``.
    """
    updates = list(updates)
    n = len(updates)
    if n == 0:
        raise AggregatorError("gradient alignment needs at least one update")
    keys = sorted(updates[0]) if isinstance(updates[0], Mapping) else None
    flat = [_flatten_update(u, keys, i) for i, u in enumerate(updates)]
    sizes = {f.size for f in flat}
    if len(sizes) != 1:
        raise AggregatorError(f"updates have different sizes: {sorted(sizes)}")
    if weights is None:
        w = np.ones(n)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise AggregatorError(f"weights must be {n} finite numbers >= 0 with a positive sum, got {weights!r}")
    w = w / math.fsum(w)
    aggregate = np.zeros_like(flat[0])
    for weight, update in zip(w, flat):  # fixed order: the same floats on every machine
        aggregate += weight * update
    aggregate_norm = math.sqrt(_exact_dot(aggregate, aggregate))
    values = np.zeros(n)
    for i, update in enumerate(flat):
        norm = math.sqrt(_exact_dot(update, update))
        if norm > 0 and aggregate_norm > 0:
            values[i] = min(1.0, max(-1.0, _exact_dot(update, aggregate) / (norm * aggregate_norm)))
    return ContributionEstimate(values=values, std_errors=np.zeros(n), evaluations=0, method="alignment")


# ---------------------------------------------------------------------------------------------------
# Normalization, accumulation, fixed point
# ---------------------------------------------------------------------------------------------------


def _finite_vector(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise AggregatorError(f"{what} must be one-dimensional, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise AggregatorError(f"{what} has a non-finite value {array[bad[0]]} at index {bad[0]}")
    return array


def normalize_to_total(values: Sequence[float] | np.ndarray, total: float) -> np.ndarray:
    """Rescale per-round values towards ``total = v(N) - v(empty)`` (efficiency) without moving any across zero.

    Exact Shapley and untruncated Monte Carlo are already efficient (up to rounding); truncation,
    a dropped budget or other scores (gain, leave-one-out) are not. Payment reads only the positive
    values (the chain credits a round's reward in proportion to them and never credits a value <= 0),
    so the rule rescales one side of zero, never shifts, and never turns a value <= 0 positive:

    1. All values zero (e.g. GTG's round truncation: the round's gain was too small to tell the
       players apart): zeros, whatever ``total`` is. The round pays nobody and the chain carries its
       reward forward.
    2. Some value positive, with ``P`` the sum of the positive values and ``N`` that of the negative
       ones: if ``total - N > 0``, multiply the positive values by ``(total - N) / P`` (negatives kept);
       else, if some value is negative, multiply the negative values by ``(total - P) / N`` (positives
       kept). Either way the values sum to ``total``.
    3. No value positive, some negative: if ``total < 0``, multiply them by ``total / N``.
    4. Otherwise no one-sided positive rescaling reaches ``total`` (e.g. positive values and a
       non-positive total with no negative value): the values are kept as estimated.

    Every factor is positive, so signs, zeros (null players), ranks and the ratios among the
    positive values (the payout shares) are kept; an efficient estimate is returned unchanged.

    Parameters
    ----------
    values : array_like, shape (n,)
        Per-player values, finite.
    total : float
        What they should sum to, finite.

    Returns
    -------
    np.ndarray, shape (n,)
        Values with the signs of ``values``, summing to ``total`` up to float rounding (about ``n``
        ulps of the largest value) except in cases 1 and 4.
    """
    return _normalize(values, total)[0]


def _normalize(values: Any, total: float) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """:func:`normalize_to_total` and the rescaling it applied, as a function of another vector (the spreads)."""
    array = _finite_vector(values, "values")
    if array.size == 0:
        raise AggregatorError("cannot normalize an empty vector of values")
    total = float(total)
    if not math.isfinite(total):
        raise AggregatorError(f"total must be finite, got {total}")
    positive, negative = array > 0, array < 0
    # Each side is divided by its sum before it is multiplied by its target: a subnormal sum cannot overflow.
    divisors, targets = np.ones(array.size), np.ones(array.size)
    try:
        positive_sum, negative_sum = math.fsum(array[positive]), math.fsum(array[negative])
        if positive_sum > 0 and total - negative_sum > 0:
            divisors[positive], targets[positive] = positive_sum, total - negative_sum
        elif negative_sum < 0 and total - positive_sum < 0:
            divisors[negative], targets[negative] = negative_sum, total - positive_sum
    except OverflowError as error:
        raise AggregatorError("values are too large to normalize") from error

    def rescale(vector: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            return (np.asarray(vector, dtype=np.float64) / divisors) * targets

    scaled = rescale(array)
    if not np.all(np.isfinite(scaled)):
        raise AggregatorError("values are too large to normalize")
    return scaled, rescale


def normalize_estimate(estimate: ContributionEstimate) -> ContributionEstimate:
    """An estimate whose values are :func:`normalize_to_total` of its values with its own total.

    Each standard error (sampling and, when present, over the rows) is rescaled as its value was. Raises for
    ``alignment`` estimates, which have no total.
    """
    total = estimate.total
    if not math.isfinite(total):
        raise AggregatorError(f"a {estimate.method!r} estimate has no v(N) - v(empty) to normalize to")
    values, rescale = _normalize(estimate.values, total)
    return ContributionEstimate(
        values=values,
        std_errors=rescale(estimate.std_errors),
        evaluations=estimate.evaluations,
        method=estimate.method,
        permutations=estimate.permutations,
        converged=estimate.converged,
        grand_value=estimate.grand_value,
        empty_value=estimate.empty_value,
        seed=estimate.seed,
        samples=estimate.samples,
        form=estimate.form,
        row_std_errors=None if estimate.row_std_errors is None else rescale(estimate.row_std_errors),
    )


def cumulative_values(rounds: Sequence[Mapping[str, float | int]]) -> dict[str, float | int]:
    """Each institution's value summed over rounds.

    Parameters
    ----------
    rounds : sequence of mappings address -> value
        One mapping per round. An institution missing from a round counts 0 there. Keys are compared
        as given: pass canonical (e.g. checksummed) addresses.

    Returns
    -------
    dict
        Address -> total, in order of first appearance. Sums of floats are correctly rounded
        (``math.fsum``: independent of round order); if every value of an address is an int (e.g.
        on-chain fixed point), its total is an exact int.
    """
    per_address: dict[str, list] = {}
    for index, round_values in enumerate(rounds):
        if not isinstance(round_values, Mapping):
            raise AggregatorError(f"round {index} must map address -> value, got {type(round_values).__name__}")
        for address, value in round_values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise AggregatorError(f"round {index}: value of {address} is not a number: {value!r}")
            if isinstance(value, (float, np.floating)) and not math.isfinite(value):
                raise AggregatorError(f"round {index}: value of {address} is {value}")
            per_address.setdefault(address, []).append(value)
    totals: dict[str, float | int] = {}
    for address, values in per_address.items():
        if all(isinstance(v, (int, np.integer)) for v in values):
            totals[address] = sum(int(v) for v in values)
        else:
            totals[address] = math.fsum(float(v) for v in values)
    return totals


def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise AggregatorError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def to_fixed_point(values: Sequence[float] | np.ndarray, scale: int = 10**18) -> list[int]:
    """Signed fixed-point integers for the chain (Solidity ``int256``), rounding half away from zero.

    Each float is converted exactly (``Fraction(value) * scale``, no float multiplication), then rounded
    to the nearest integer with ties away from zero (``0.5 -> 1``, ``-0.5 -> -1``), so the result is exact
    and the same on every machine. Sums of the integers may differ from ``round(sum * scale)`` by up to
    ``n / 2`` units (per-value rounding).

    Parameters
    ----------
    values : array_like, shape (n,)
        Finite floats.
    scale : int
        Units per 1.0 (default ``10**18``, like wei per ether).

    Returns
    -------
    list of int
        Python ints in ``[-2**255, 2**255 - 1]``.

    Raises
    ------
    AggregatorError
        On NaN or Inf (naming the index), a non-1-D input, a non-positive scale, or int256 overflow.
    """
    scale = _check_scale(scale)
    array = _finite_vector(values, "values")
    result = []
    for index, value in enumerate(array.tolist()):
        scaled = Fraction(value) * scale
        magnitude = abs(scaled)
        whole, remainder = divmod(magnitude.numerator, magnitude.denominator)
        if 2 * remainder >= magnitude.denominator:
            whole += 1
        integer = -whole if scaled < 0 else whole
        if not INT256_MIN <= integer <= INT256_MAX:
            raise AggregatorError(f"value {value} at index {index} times scale {scale} overflows int256")
        result.append(integer)
    return result


def from_fixed_point(integers: Sequence[int], scale: int = 10**18) -> np.ndarray:
    """Floats from on-chain fixed-point integers: each ``integer / scale``, correctly rounded.

    ``from_fixed_point(to_fixed_point(x))`` is within ``0.5 / scale`` (plus one float rounding) of ``x``;
    the other way round is the identity only while ``scale`` times a float's spacing is below 1.

    Parameters
    ----------
    integers : sequence of int
        Values in the int256 range (Python or NumPy integers; not bools or floats).
    scale : int
        Units per 1.0 (default ``10**18``).

    Returns
    -------
    np.ndarray, shape (n,), float64
    """
    scale = _check_scale(scale)
    result = []
    for index, integer in enumerate(integers):
        if isinstance(integer, bool) or not isinstance(integer, (int, np.integer)):
            raise AggregatorError(f"fixed-point value at index {index} is not an integer: {integer!r}")
        integer = int(integer)
        if not INT256_MIN <= integer <= INT256_MAX:
            raise AggregatorError(f"fixed-point value at index {index} is outside int256: {integer}")
        result.append(integer / scale)  # int / int true division is correctly rounded
    return np.array(result, dtype=np.float64)


# ---------------------------------------------------------------------------------------------------
# Rank agreement (for benchmarks: no scipy here)
# ---------------------------------------------------------------------------------------------------


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = _finite_vector(a, "a"), _finite_vector(b, "b")
    if x.size != y.size:
        raise AggregatorError(f"a and b differ in length: {x.size} and {y.size}")
    if x.size < 2:
        raise AggregatorError("a correlation needs at least two pairs")
    return x, y


def pearson(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Pearson correlation of two equal-length vectors; NaN if either is constant (undefined)."""
    x, y = _paired(a, b)
    dx, dy = x - math.fsum(x) / x.size, y - math.fsum(y) / y.size
    denominator = math.sqrt(math.fsum(dx * dx) * math.fsum(dy * dy))
    if denominator == 0:
        return math.nan
    return max(-1.0, min(1.0, math.fsum(dx * dy) / denominator))


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks (as ``scipy.stats.rankdata``)."""
    x = _finite_vector(values, "values")
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    start = 0
    while start < x.size:
        end = start
        while end + 1 < x.size and x[order[end + 1]] == x[order[start]]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation: Pearson of the average ranks; NaN if either vector is constant."""
    x, y = _paired(a, b)
    return pearson(average_ranks(x), average_ranks(y))


# ---------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------

ESTIMATORS: dict[str, Callable[..., ContributionEstimate]] = {
    "exact": exact_shapley,
    "mc": monte_carlo_shapley,
    "tmc": truncated_monte_carlo_shapley,
    "gtg": gtg_shapley,
    "loo": leave_one_out,
    "gain": validation_gain,
    "alignment": gradient_alignment,
}

#: The estimator the aggregator uses when the configuration names none.
DEFAULT_ESTIMATOR = "gtg"

#: Estimators that take update arrays rather than ``(n, utility)``.
UPDATE_ESTIMATORS = frozenset({"alignment"})


@dataclass(frozen=True)
class Estimator:
    """An estimator bound to its configured parameters.

    Call it as the underlying function without those parameters: ``estimator(n, utility, seed=...)``,
    or ``estimator(updates, weights=...)`` when ``needs_utility`` is False. Call-time keywords override
    configured ones.
    """

    name: str
    params: Mapping[str, Any]

    @property
    def function(self) -> Callable[..., ContributionEstimate]:
        return ESTIMATORS[self.name]

    @property
    def needs_utility(self) -> bool:
        return self.name not in UPDATE_ESTIMATORS

    def __call__(self, *args: Any, **kwargs: Any) -> ContributionEstimate:
        return self.function(*args, **{**self.params, **kwargs})


def make_estimator(name: str, **params: Any) -> Estimator:
    """Pick an estimator by its configuration name and bind its parameters.

    Parameters
    ----------
    name : str
        One of ``ESTIMATORS``: "exact", "mc", "tmc", "gtg", "loo", "gain", "alignment".
    **params
        Keyword parameters of that estimator (e.g. ``truncation_tolerance=0.05``); checked now, so a
        misspelt or inapplicable setting fails at configuration time, not mid-round.

    Raises
    ------
    AggregatorError
        For an unknown name or parameter, or an invalid sampling parameter value.
    """
    if name not in ESTIMATORS:
        raise AggregatorError(f"unknown contribution estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    signature = inspect.signature(ESTIMATORS[name])
    accepted = [p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise AggregatorError(f"estimator {name!r} does not take {unknown}; it takes {accepted}")
    if "seed" in params and params["seed"] is not None:
        _check_seed(params["seed"])
    if name in ("mc", "tmc", "gtg"):
        settings = {p: signature.parameters[p].default for p in accepted if p != "seed"}
        settings.update({k: v for k, v in params.items() if k != "seed"})
        if name == "mc":
            settings["truncation_tolerance"] = 0.0
        _check_exact_up_to(settings.pop("exact_up_to", 0))
        round_threshold = settings.pop("round_truncation_threshold", 0.0)
        if not isinstance(round_threshold, (int, float)) or not round_threshold >= 0:
            raise AggregatorError(f"round_truncation_threshold must be a number >= 0, got {round_threshold!r}")
        # n is unknown until the round: check the budget against the smallest federation (1 player).
        _check_sampling_params(1, **settings)
    return Estimator(name=name, params=dict(params))
