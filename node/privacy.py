"""Differential-privacy accounting of an institution's local training (Opacus's RDP accountant).

DP-SGD here is sample-level, as FLamby's DP example: each local step draws a Poisson batch (every row
with probability ``q = batch_size / rows``), clips each row's gradient to ``max_grad_norm`` and adds
Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm`` to their sum. The noise
multiplier is the smallest one with which ``privacy.rounds`` rounds of local steps spend at most the
task's epsilon (:func:`noise_multiplier`); :func:`epsilon_spent` is what a number of trained rounds has
cost. Pure functions of (task settings, local row count): the node, the benchmark and the tests agree.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

from fedcore.errors import ConfigError, NodeError
from fedcore.task import PrivacySettings, TrainingSettings


class PrivacyBudgetExceeded(NodeError):
    """Training one more round would spend more than the bounty's epsilon."""


def sample_rate(settings: TrainingSettings, n_rows: int) -> float:
    """Poisson sampling probability of a row in one local step: ``batch_size / rows`` (at most 1)."""
    if n_rows < 1:
        raise ConfigError("differential privacy needs at least one training row")
    return min(1.0, settings.batch_size / n_rows)


def steps_per_round(settings: TrainingSettings, n_rows: int) -> int:
    """Local DP-SGD steps of one round: ``local_steps``, or ``local_epochs`` passes of ``1 / q`` steps."""
    if settings.local_steps is not None:
        return int(settings.local_steps)
    if settings.local_epochs is None:
        raise ConfigError("training: set exactly one of local_steps and local_epochs")
    return int(settings.local_epochs) * max(1, round(1.0 / sample_rate(settings, n_rows)))


def noise_multiplier(privacy: PrivacySettings, settings: TrainingSettings, n_rows: int) -> float:
    """The noise multiplier that makes ``privacy.rounds`` rounds spend at most ``privacy.epsilon``.

    Opacus's ``get_noise_multiplier`` (RDP accountant) for ``rounds x steps_per_round`` steps at
    :func:`sample_rate`.
    """
    if privacy.epsilon is None:
        raise ConfigError("the task has no differential privacy (privacy.epsilon is null)")
    return _noise_multiplier(privacy.epsilon, privacy.delta, sample_rate(settings, n_rows),
                             privacy.rounds * steps_per_round(settings, n_rows))


@lru_cache(maxsize=256)
def _noise_multiplier(epsilon: float, delta: float, rate: float, steps: int) -> float:
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=rate, steps=steps,
                                          accountant="rdp", epsilon_tolerance=epsilon * 0.002))


RoundCost = tuple[float, float, int]  # (noise multiplier, sample rate, steps) of one round of DP-SGD


def round_cost(privacy: PrivacySettings, settings: TrainingSettings, n_rows: int) -> RoundCost:
    """What one round of DP-SGD with these settings costs, as an entry of Opacus's accountant history."""
    return (noise_multiplier(privacy, settings, n_rows), sample_rate(settings, n_rows),
            steps_per_round(settings, n_rows))


def epsilon_of(history: list[RoundCost] | tuple[RoundCost, ...], delta: float) -> float:
    """Cumulative epsilon (at ``delta``) of the rounds in ``history`` (RDP composition); 0 for none."""
    entries = tuple((float(s), float(q), int(k)) for s, q, k in history)
    return _epsilon(entries, delta) if entries else 0.0


def epsilon_spent(privacy: PrivacySettings, settings: TrainingSettings, n_rows: int, rounds_trained: int) -> float:
    """Epsilon spent (at ``privacy.delta``) after ``rounds_trained`` rounds with the task's noise multiplier."""
    return epsilon_of([round_cost(privacy, settings, n_rows)] * max(0, rounds_trained), privacy.delta)


@lru_cache(maxsize=1024)
def _epsilon(history: tuple[RoundCost, ...], delta: float) -> float:
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = list(history)
    # at tiny epsilons the best RDP order is Opacus's largest: a looser bound, still valid
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return float(accountant.get_epsilon(delta))


def check_budget(privacy: PrivacySettings, settings: TrainingSettings, n_rows: int,
                 history: list[RoundCost] | tuple[RoundCost, ...]) -> tuple[RoundCost, float]:
    """The cost of training one more round after ``history``, and the cumulative epsilon it would reach.

    Raises
    ------
    PrivacyBudgetExceeded
        When that cumulative epsilon is above ``privacy.epsilon``.
    """
    if privacy.epsilon is None:
        raise ConfigError("the task has no differential privacy (privacy.epsilon is null)")
    cost = round_cost(privacy, settings, n_rows)
    after = epsilon_of([*history, cost], privacy.delta)
    if after > privacy.epsilon * (1 + 1e-9):
        raise PrivacyBudgetExceeded(
            f"privacy budget exhausted: another round would bring epsilon to {after:.4g}, above the bounty's "
            f"{privacy.epsilon:g} (after {len(history)} rounds)"
        )
    return cost, after
