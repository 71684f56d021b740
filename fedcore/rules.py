"""A bounty's round rules: everything that decides an aggregate and a score, fixed before anyone trains.

:class:`RoundRules` is the fully resolved configuration of every round of a bounty: the aggregation strategy
and all its parameters, the contribution estimator and all its parameters (defaults merged in, so a later
change of a library default cannot change what an old round means), the utility metric, the fixed-point
scale of on-chain scores, the scoring seed and the rules' version. Its identity is :func:`rules_hash`, the
sha256 of its canonical JSON; the sponsor fixes that hash on chain in ``createBounty``, the aggregator refuses
to serve rules that do not hash to it, a node checks it before training and an auditor before recomputing.

Resolving names into full parameter sets needs the strategies and estimators, so it lives with them
(:func:`aggregator.rules.resolve_rules`); this module only holds, checks, serialises and hashes the result,
which is all a node needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, ClassVar

from fedcore import jsondoc
from fedcore.errors import ConfigError
from fedcore.metrics import ROW_METRICS
from fedcore.seeds import scoring_seed

#: Bumped whenever the meaning of a field or the round computation changes: old bounties keep their version.
#: 5: step_search.tolerance; 4: row_spread, step_search; 3: zero_within_spread, scores keep SCORE_DECIMALS decimals.
RULES_VERSION = 5
#: On-chain scores are int256 with 18 decimals: the score of a value ``v`` is ``v`` rounded (half away from zero) to
#: SCORE_DECIMALS decimals, times FIXED_POINT_SCALE, so a multiple of SCORE_QUANTUM. The rounding is what lets a
#: scoring committee agree: another float summation order moved Heart scores by up to 3e-9 (``bench/bitexact.py``),
#: below the 5e-7 that changes a 6-decimal score except at a rounding boundary.
FIXED_POINT_SCALE = 10**18
SCORE_DECIMALS = 6
SCORE_QUANTUM = 10 ** (18 - SCORE_DECIMALS)
#: How a round's scoring seed follows from ``seed`` (:func:`fedcore.seeds.scoring_seed`), spelled out for auditors.
SEED_RULE = "sha256(seed 0x1f 'score' 0x1f round)[:8] >> 1"
UTILITY_METRICS = ("accuracy", "auc", "neg_loss")
#: The contribution gate's defaults (:mod:`aggregator.gate`). An update is harmful when its value is below
#: ``-(HARM_SPREAD x its standard error + HARM_MARGIN)``: two standard errors of a sampling estimator (a one-sided
#: 2.3% chance of leaving out an update whose true value is zero), plus a margin in utility units that stands
#: alone for exact estimators (std 0): 1e-4 is GTG's own round-truncation tolerance, the smallest gain the
#: default estimator tells apart from zero, and far above the float32 noise of one forward pass.
HARM_SPREAD = 2.0
HARM_MARGIN = 1e-4
#: Whether a negative value within that spread is posted as 0 (no reputation lost for harm not told apart from zero).
ZERO_WITHIN_SPREAD = True
#: Whether a round whose gain (``v(kept) - v(empty)``, of what entered the model) is not positive posts every positive
#: score as 0: it delivered no value to the sponsor, so it credits nobody and carries its reward.
PAY_ONLY_GAIN = True
#: Whether a value's spread includes its standard error over the sponsor's validation rows (``RoundRules.row_spread``).
ROW_SPREAD = True
#: The server step search's settings (:mod:`aggregator.stepsearch`) when a bounty turns it on: a log grid of step
#: lengths from twice the round's largest update norm down 10 octaves (2^-10 ~ 1e-3 of it), two points an octave,
#: then 6 golden-section steps: 29 evaluations of the validation set per coalition (22 grid points, 7 refinements).
#: Values are compared quantized to ``tolerance`` utility units (``floor(v / tolerance)``), so a committee's scorers
#: choose the same step although another CPU's float rounding moves a value by about 1e-9: 1e-5 is ten times below
#: ``HARM_MARGIN`` (a difference no rule tells apart from zero), and measured it changes no test accuracy
#: (``python -m bench.bitexact --model mlp``; README, "Committee agreement").
STEP_SEARCH: Mapping[str, Any] = MappingProxyType(
    {"max_multiplier": 2.0, "octaves": 10, "per_octave": 2, "refinements": 6, "tolerance": 1e-5})
#: After this many consecutive rounds left out as harmful, an institution is gated: its update enters the aggregate
#: again only in a round where its value is positive beyond the same spread.
GATE_AFTER = 2


@dataclass(frozen=True)
class RoundRules(jsondoc.HashedDocument):
    """The resolved rules of every round of one bounty (see the module doc).

    Attributes
    ----------
    strategy : str
        Aggregation strategy name (``aggregator.strategies.make_strategy``).
    strategy_params : Mapping[str, Any]
        Every constructor setting of that strategy, defaults included.
    estimator : str
        Contribution estimator name (``aggregator.shapley.ESTIMATORS``).
    estimator_params : Mapping[str, Any]
        Every parameter of that estimator, defaults included (no seed).
    utility_metric : str
        The metric of the coalition utility: ``"accuracy"``, ``"auc"`` or ``"neg_loss"``.
    seed : int
        Root of every round's scoring seed (:meth:`round_seed`).
    fixed_point_scale : int
        Scale of the on-chain integer scores.
    seed_rule : str
        :data:`SEED_RULE`, the derivation of a round's seed, in words.
    exclude_harmful : bool
        Whether the contribution gate runs (:mod:`aggregator.gate`): an update whose value is negative beyond its
        spread is left out of the round's aggregate (still scored, on chain, never credited).
    harm_spread : float
        Standard errors of the value that a harmful update's value lies below zero (:data:`HARM_SPREAD`).
    row_spread : bool
        Whether that standard error combines the estimator's sampling error with the value's standard error over the
        sponsor's validation rows, ``sqrt(sampling**2 + rows**2)`` (:data:`ROW_SPREAD`): the utility is a mean over
        rows, so each value splits into per-row values (no extra evaluation) whose stratified spread under the task's
        population says how far another sample of the sponsor's population could move it. "Not told apart from zero"
        then holds for exact estimators too (sampling error 0). Needs a utility metric that is a mean over rows
        (``"accuracy"``, ``"neg_loss"``).
    harm_margin : float
        Utility units added to that spread (:data:`HARM_MARGIN`; the whole spread of an exact estimator).
    gate_after : int
        Consecutive harmful rounds after which an institution is gated until it delivers positive value beyond the
        spread again (:data:`GATE_AFTER`; 0 never gates).
    zero_within_spread : bool
        Whether a negative value within ``harm_spread x std_error + harm_margin`` of zero goes on chain as 0
        (:data:`ZERO_WITHIN_SPREAD`; :func:`aggregator.gate.on_chain_scores`): credited nothing either way, it then
        moves no reputation, so only harm told apart from zero lowers a reputation.
    pay_only_gain : bool
        Whether a round whose gain of what entered the model is not positive posts its positive scores as 0
        (:data:`PAY_ONLY_GAIN`; :func:`aggregator.gate.on_chain_scores`): nobody is paid for a round that delivered no
        value; negative scores still go on chain.
    step_search : Mapping or None
        None: every coalition's model, and the round's, is the strategy's aggregate. Otherwise the settings of the
        server step search (the keys of :data:`STEP_SEARCH`): a coalition's model is the best point on the
        validation set along its aggregate's direction over a fixed grid of step lengths, and the round's model
        takes the step chosen for what it keeps (:mod:`aggregator.stepsearch`), so an update that only shortens
        the step (a zero update) is worth nothing.
    version : int
        :data:`RULES_VERSION` when the rules were resolved.
    """

    strategy: str
    strategy_params: Mapping[str, Any]
    estimator: str
    estimator_params: Mapping[str, Any]
    utility_metric: str
    seed: int
    fixed_point_scale: int = FIXED_POINT_SCALE
    seed_rule: str = SEED_RULE
    exclude_harmful: bool = True
    harm_spread: float = HARM_SPREAD
    harm_margin: float = HARM_MARGIN
    row_spread: bool = ROW_SPREAD
    gate_after: int = GATE_AFTER
    zero_within_spread: bool = ZERO_WITHIN_SPREAD
    pay_only_gain: bool = PAY_ONLY_GAIN
    step_search: Mapping[str, Any] | None = None
    version: int = RULES_VERSION

    DOCUMENT: ClassVar[str] = "round rules"

    def __post_init__(self) -> None:
        for name in ("strategy", "estimator"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"rules.{name} must be a non-empty string")
        for name in ("strategy_params", "estimator_params"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"rules.{name} must be an object")
            object.__setattr__(self, name, _plain(dict(getattr(self, name)), f"rules.{name}"))
        if "seed" in self.estimator_params:
            raise ConfigError("rules.estimator_params must not hold a seed: the rules' seed is the only one")
        if self.utility_metric not in UTILITY_METRICS:
            raise ConfigError(f"rules.utility_metric must be one of {UTILITY_METRICS}, got {self.utility_metric!r}")
        if not jsondoc.is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"rules.seed must be a non-negative integer, got {self.seed!r}")
        if self.fixed_point_scale != FIXED_POINT_SCALE:
            raise ConfigError(f"rules.fixed_point_scale must be {FIXED_POINT_SCALE}, got {self.fixed_point_scale!r}")
        if self.seed_rule != SEED_RULE:
            raise ConfigError(f"rules.seed_rule must be {SEED_RULE!r}, got {self.seed_rule!r}")
        for name in ("exclude_harmful", "zero_within_spread", "pay_only_gain", "row_spread"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"rules.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("harm_spread", "harm_margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"rules.{name} must be a finite number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.row_spread and self.utility_metric not in ROW_METRICS:
            raise ConfigError(f"rules.row_spread needs a utility metric that is a mean over rows "
                              f"({', '.join(ROW_METRICS)}), got {self.utility_metric!r}")
        if not jsondoc.is_int(self.gate_after) or self.gate_after < 0:
            raise ConfigError(f"rules.gate_after must be a non-negative integer, got {self.gate_after!r}")
        if self.step_search is not None:
            object.__setattr__(self, "step_search", _step_search(self.step_search))
        if self.version != RULES_VERSION:
            raise ConfigError(f"rules.version {self.version!r} is not supported (this build knows {RULES_VERSION})")

    def fit_config(self) -> dict[str, Any]:
        """Training overrides every institution applies in every round: the strategy's ``fit_config`` and,
        for FedProx, its proximal weight ``mu`` as ``fedprox_mu``. Nodes derive it from the hashed rules."""
        config = dict(self.strategy_params.get("fit_config") or {})
        if self.strategy == "fedprox":
            config["fedprox_mu"] = float(self.strategy_params["mu"])
        return config

    def round_seed(self, round_: int) -> int:
        """The seed of round ``round_``'s contribution estimator."""
        return scoring_seed(self.seed, round_)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: jsondoc.thaw(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> RoundRules:
        if not isinstance(data, Mapping):
            raise ConfigError("round rules must be a JSON object")
        # resolved rules spell out every field: nothing is left to a default of this build
        jsondoc.check_keys("rules", data, cls, all_required=True)
        return cls(**data)



def rules_hash(rules: RoundRules) -> bytes:
    """sha256 of the canonical JSON, 32 bytes: the ``rulesHash`` a bounty fixes on chain."""
    return rules.digest()


def rules_hash_hex(rules: RoundRules) -> str:
    return "0x" + rules_hash(rules).hex()


def _step_search(value: Any) -> dict[str, Any]:
    """The checked step-search settings: exactly :data:`STEP_SEARCH`'s keys, valid numbers."""
    if not isinstance(value, Mapping) or set(value) != set(STEP_SEARCH):
        raise ConfigError(f"rules.step_search must be null or an object with keys {', '.join(sorted(STEP_SEARCH))}")
    multiplier = value["max_multiplier"]
    if isinstance(multiplier, bool) or not isinstance(multiplier, int | float) or not 0 < multiplier < math.inf:
        raise ConfigError(f"rules.step_search.max_multiplier must be a finite number > 0, got {multiplier!r}")
    tolerance = value["tolerance"]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < math.inf:
        raise ConfigError(f"rules.step_search.tolerance must be a finite number >= 0, got {tolerance!r}")
    out: dict[str, Any] = {"max_multiplier": float(multiplier), "tolerance": float(tolerance)}
    for name, low in (("octaves", 0), ("per_octave", 1), ("refinements", 0)):
        if not jsondoc.is_int(value[name]) or not low <= value[name] <= 64:
            raise ConfigError(f"rules.step_search.{name} must be an integer in [{low}, 64], got {value[name]!r}")
        out[name] = int(value[name])
    return out


def _plain(value: Any, where: str) -> Any:
    """A JSON-plain copy (dicts, lists, str, finite numbers, bools, None); ints stay ints, floats floats."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ConfigError(f"{where} is not plain JSON: {value!r}")
