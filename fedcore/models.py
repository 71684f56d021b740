"""A small model zoo for tabular binary classification.

Every model maps ``X`` of shape ``(n, d)`` to one logit per row, shape ``(n, 1)``; the loss is
binary cross-entropy on logits. Adding a model is one builder function registered under a name::

    @register_model("my_model")
    def build_my_model(n_features: int, **params) -> torch.nn.Module: ...

Weights travel as an ordered ``dict[str, np.ndarray]`` of float32 arrays in the model's
``state_dict`` order (the codec re-sorts them by name on the wire).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcore.errors import ConfigError, DataError

Weights = dict[str, np.ndarray]
ModelBuilder = Callable[..., nn.Module]

MODEL_BUILDERS: dict[str, ModelBuilder] = {}


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator adding a builder ``(n_features, **params) -> nn.Module`` to the registry."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        if name in MODEL_BUILDERS:
            raise ConfigError(f"model {name!r} is already registered")
        MODEL_BUILDERS[name] = builder
        return builder

    return decorate


class LogisticRegression(nn.Module):
    """``Linear(d, 1)``: one logit per row (the sigmoid lives in the loss and in predictions)."""

    def __init__(self, n_features: int):
        super().__init__()
        self.linear = nn.Linear(n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


class MLP(nn.Module):
    """Fully connected ReLU network ``d -> hidden_sizes... -> 1``."""

    def __init__(self, n_features: int, hidden_sizes: Sequence[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class FENDA(nn.Module):
    """FENDA (Federated Feature Disentanglement, Tyler et al. 2023): two ReLU feature extractors
    ``d -> hidden_size``, concatenated into a linear head ``2 * hidden_size -> 1``.

    Only ``shared.*`` (the global extractor) is trained by the federation and leaves the institution;
    ``local.*`` (the local extractor) and ``head.*`` never do (:func:`shared_names`).
    """

    shared_prefixes = ("shared.",)

    def __init__(self, n_features: int, hidden_size: int):
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(n_features, hidden_size), nn.ReLU())
        self.local = nn.Sequential(nn.Linear(n_features, hidden_size), nn.ReLU())
        self.head = nn.Linear(2 * hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.shared(x), self.local(x)], dim=1))


@register_model("logreg")
def build_logreg(n_features: int) -> nn.Module:
    return LogisticRegression(n_features)


@register_model("mlp")
def build_mlp(n_features: int, hidden_sizes: Sequence[int] = (32,), dropout: float = 0.0) -> nn.Module:
    if isinstance(hidden_sizes, int):
        hidden_sizes = (hidden_sizes,)
    if not hidden_sizes or any(not isinstance(h, int) or h < 1 for h in hidden_sizes):
        raise ConfigError(f"mlp.hidden_sizes must be positive integers, got {list(hidden_sizes)!r}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"mlp.dropout must be in [0, 1), got {dropout!r}")
    return MLP(n_features, tuple(hidden_sizes), float(dropout))


@register_model("fenda")
def build_fenda(n_features: int, hidden_size: int = 16) -> nn.Module:
    if not isinstance(hidden_size, int) or hidden_size < 1:
        raise ConfigError(f"fenda.hidden_size must be a positive integer, got {hidden_size!r}")
    return FENDA(n_features, hidden_size)


def shared_names(model: nn.Module) -> tuple[str, ...]:
    """Names (``state_dict`` order) of the parameters a federation trains together and an institution sends:
    every one, unless the model names its shared part with a ``shared_prefixes`` attribute (:class:`FENDA`)."""
    prefixes = getattr(model, "shared_prefixes", ("",))
    return tuple(name for name in model.state_dict() if name.startswith(tuple(prefixes)))


def build_model(spec_or_name: Any, n_features: int | None = None, seed: int = 0, **params: Any) -> nn.Module:
    """Build a model with deterministic initial weights.

    Parameters
    ----------
    spec_or_name : TaskSpec or str
        A task spec (its ``model``, ``model_params`` and ``n_features`` are used) or a registry name.
    n_features : int, optional
        Input width ``d``; defaults to the spec's number of feature columns.
    seed : int
        Initial weights are a function of this seed only (the global torch RNG is untouched).
    **params
        Builder keyword arguments; override the spec's ``model_params``.

    Returns
    -------
    torch.nn.Module
        Maps ``(n, d)`` float32 to ``(n, 1)`` logits.
    """
    if isinstance(spec_or_name, str):
        name, spec_params, spec_width = spec_or_name, {}, None
    else:
        name = spec_or_name.model
        spec_params = dict(spec_or_name.model_params)
        spec_width = spec_or_name.n_features
    width = n_features if n_features is not None else spec_width
    if width is None or not isinstance(width, int) or width < 1:
        raise ConfigError(f"n_features must be a positive integer, got {width!r}")
    builder = MODEL_BUILDERS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(MODEL_BUILDERS))}")
    try:
        model = builder(width, **{**spec_params, **params})
    except TypeError as error:
        raise ConfigError(f"bad parameters for model {name!r}: {error}") from None
    initialize(model, seed)
    return model


@torch.no_grad()
def initialize(model: nn.Module, seed: int) -> None:
    """Re-draw every Linear layer like PyTorch's default, from a private generator.

    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases (what ``nn.Linear`` does by
    default), drawn in ``state_dict`` order so the result depends on ``seed`` alone.
    """
    generator = torch.Generator().manual_seed(int(seed))
    for module in model.modules():
        if isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            for tensor in (module.weight, module.bias):
                if tensor is not None:
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (2 * bound) - bound)


def initial_weights(spec: Any, n_features: int | None = None) -> Weights:
    """Round 1's global model of a task: its model initialised from :func:`fedcore.seeds.initial_model_seed`
    of the task's ``training.seed`` (simulation and deployment start from the same weights)."""
    from fedcore.seeds import initial_model_seed

    return get_weights(build_model(spec, n_features, seed=initial_model_seed(spec.training.seed)))


def get_weights(model: nn.Module) -> Weights:
    """Copy of the model's state as float32 numpy arrays, in ``state_dict`` order.

    Returns
    -------
    dict[str, np.ndarray]
        e.g. ``{"linear.weight": (1, d), "linear.bias": (1,)}`` for ``logreg``.
    """
    return OrderedDict(
        (name, tensor.detach().cpu().numpy().astype(np.float32, copy=True))
        for name, tensor in model.state_dict().items()
    )


@torch.no_grad()
def set_weights(model: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Load arrays into the model in place; names and shapes must match exactly."""
    state = model.state_dict()
    missing = sorted(set(state) - set(weights))
    extra = sorted(set(weights) - set(state))
    if missing or extra:
        raise DataError(f"weights do not fit the model: missing {missing}, unexpected {extra}")
    for name, tensor in state.items():
        array = np.asarray(weights[name])
        if tuple(array.shape) != tuple(tensor.shape):
            raise DataError(f"weight {name!r} has shape {array.shape}, model expects {tuple(tensor.shape)}")
        tensor.copy_(torch.from_numpy(np.asarray(array, dtype=np.float32, order="C")))


def weight_spec(model: nn.Module) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, "float32")}``, the ``expected`` argument of :func:`fedcore.codec.decode`."""
    return {name: (tuple(t.shape), "float32") for name, t in model.state_dict().items()}


@torch.no_grad()
def predict_logits(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Logits, shape ``(n,)``, float64, in evaluation mode."""
    was_training = model.training
    model.eval()
    try:
        out = model(torch.as_tensor(np.asarray(X, dtype=np.float32)))
    finally:
        model.train(was_training)
    return out.reshape(-1).double().numpy()


def predict_proba(model: nn.Module, X: np.ndarray) -> np.ndarray:
    """Probabilities of the positive class, shape ``(n,)``."""
    # tanh form of the sigmoid: no overflow for large negative logits
    return 0.5 * (1.0 + np.tanh(0.5 * predict_logits(model, X)))


def model_from_weights(
    spec_or_name: Any, weights: Mapping[str, np.ndarray], n_features: int | None = None
) -> nn.Module:
    """A model of the task's architecture holding ``weights`` (input width read from them if needed)."""
    if n_features is None and isinstance(spec_or_name, str):
        first = next(iter(weights.values()))
        n_features = int(np.shape(first)[-1])
    model = build_model(spec_or_name, n_features, seed=0)
    set_weights(model, weights)
    return model


def predict_with_weights(spec_or_name: Any, weights: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """Positive-class probabilities, shape ``(n,)``, of the model with ``weights`` on ``X`` of shape ``(n, d)``."""
    X = np.asarray(X, dtype=np.float32)
    return predict_proba(model_from_weights(spec_or_name, weights, n_features=X.shape[1]), X)
