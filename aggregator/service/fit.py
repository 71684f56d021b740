"""Each round's training overrides for the institutions, from the bounty's strategy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedcore.protocol import FitConfig

# configure_fit is asked for one stand-in client: the round info is the same for every institution.
_ANY_CLIENT = "*"


def fit_config(strategy_name: str, strategy_params: Mapping[str, Any], round_: int) -> FitConfig:
    """``strategy.configure_fit(round_, [client])`` of the strategy the round is computed with, as a :class:`FitConfig`.

    Parameters
    ----------
    strategy_name, strategy_params
        As given to :func:`aggregator.strategies.make_strategy` (``fedprox`` with ``mu`` hands out ``fedprox_mu``).
    round_ : int
        The round (1-based).
    """
    from aggregator.strategies import make_strategy

    strategy = make_strategy(strategy_name, **dict(strategy_params))
    return FitConfig.model_validate(strategy.configure_fit(int(round_), [_ANY_CLIENT])[_ANY_CLIENT])
