"""One root exception with a subclass per layer.

The CLI catches ``FedLedgerError`` and prints ``str(error)`` as one line; anything else is a bug
and keeps its traceback.
"""


class FedLedgerError(Exception):
    """Root of every error a user can cause (bad input, missing chain, wrong password...)."""


class ConfigError(FedLedgerError):
    """A missing or malformed file, setting or argument."""


class DataError(FedLedgerError):
    """Malformed data: wrong columns, shapes, NaN or Inf, unreadable files."""


class CodecError(DataError):
    """An update or model payload that does not decode to the expected tensors."""


class ChainError(FedLedgerError):
    """The chain cannot be reached, a deployment is missing, a transaction failed."""


class ContractRevert(ChainError):
    """A transaction or call reverted with a custom error.

    Attributes
    ----------
    name : str
        The Solidity custom error's name, e.g. ``"RoundClosed"``.
    args : dict
        Its arguments by name, e.g. ``{"bountyId": 1, "round": 2}``.
    """

    def __init__(self, name: str, args: dict | None = None, message: str | None = None):
        self.name = name
        self.error_args = dict(args or {})
        rendered = ", ".join(f"{k}={v}" for k, v in self.error_args.items())
        super().__init__(message or f"contract reverted: {name}({rendered})")


class NodeError(FedLedgerError):
    """An error on the institution's side (keystore, training)."""


class AggregatorError(FedLedgerError):
    """An error in the aggregator service or its strategies and scorers."""
