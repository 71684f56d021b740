"""Local training at an institution: global weights in, weight delta out.

The update an institution sends is the **delta** ``w_local - w_global`` (float32 arrays with the
global weights' names and shapes). Deltas make every strategy uniform: FedAvg averages them and
adds the mean to the global weights, FedAdam/FedYogi/FedAdagrad treat the mean as a pseudo-gradient,
robust rules (median, trimmed mean, Krum) compare them directly.

Training is deterministic for a given seed: the model, the shuffling generator and (for dropout)
the torch RNG are all seeded from it, and the caller's global RNG state is restored afterwards.

Logistic regression takes a closed-form-gradient loop (same batches, same update rules as the
torch optimizers, about 10x faster); every other model goes through autograd.

With differential privacy on (``spec.privacy.epsilon`` set) every step is DP-SGD at the sample level: a
Poisson batch, each row's gradient clipped to ``max_grad_norm``, Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` added to the sum, divided by the expected batch size. Autograd models
run Opacus's ``GradSampleModule`` and ``DPOptimizer``; logistic regression computes the same clipped
per-sample gradients in closed form (checked against Opacus in ``tests/node/test_dp_training.py``). The
noise multiplier comes from :mod:`node.privacy`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fedcore import metrics as fm
from fedcore.errors import ConfigError, DataError, NodeError
from fedcore.models import LogisticRegression, build_model, get_weights, predict_proba, set_weights
from fedcore.task import TaskSpec, TrainingSettings
from fedcore.types import Update
from node import privacy as dp

Weights = dict[str, np.ndarray]


def apply_update(weights: Mapping[str, np.ndarray], update: Mapping[str, np.ndarray], scale: float = 1.0) -> Weights:
    """``weights + scale * update`` name by name, float32."""
    if set(weights) != set(update):
        raise DataError("update and weights have different tensor names")
    return {name: (weights[name] + np.float32(scale) * update[name]).astype(np.float32) for name in weights}


def settings_with(settings: TrainingSettings, config: Mapping[str, Any] | None) -> TrainingSettings:
    """Training settings overridden by a strategy's per-round config (e.g. ``{"fedprox_mu": 0.01}``)."""
    if not config:
        return settings
    known = {f.name for f in fields(TrainingSettings)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"fit config has unknown training setting(s) {', '.join(unknown)}")
    changes = dict(config)
    # Setting one of steps/epochs clears the other so the pair stays valid.
    if changes.get("local_steps") is not None and "local_epochs" not in changes:
        changes["local_epochs"] = None
    if changes.get("local_epochs") is not None and "local_steps" not in changes:
        changes["local_steps"] = None
    return replace(settings, **changes)


def train_local(
    global_weights: Mapping[str, np.ndarray],
    X: np.ndarray,
    y: np.ndarray,
    spec: TaskSpec,
    *,
    seed: int | None = None,
    config: Mapping[str, Any] | None = None,
    anchor_weights: Mapping[str, np.ndarray] | None = None,
    institution: str = "",
) -> Update:
    """Train the task's model from ``global_weights`` on local data.

    Parameters
    ----------
    global_weights : Mapping[str, np.ndarray]
        The round's global model, as :func:`fedcore.models.get_weights` returns it.
    X : np.ndarray, shape (n, d)
        Preprocessed features, ``d == spec.n_features`` (or the model's input width).
    y : np.ndarray, shape (n,)
        0/1 labels.
    spec : TaskSpec
        Model and training settings.
    seed : int, optional
        Seed of this round's shuffling (and dropout); defaults to ``spec.training.seed``. Use
        :func:`fedcore.seeds.training_seed` to vary it per round and institution.
    config : Mapping, optional
        Overrides of training settings handed out by the strategy (``fedprox_mu``, ``lr``...).
    anchor_weights : Mapping, optional
        The point the proximal term ``fedprox_mu/2 * ||w - anchor||^2`` pulls toward; defaults to
        ``global_weights``. Ditto trains a personal model from its own weights anchored at the
        global model (:mod:`node.personalize`).
    institution : str
        Who trains (kept in the returned update).

    Returns
    -------
    Update
        The delta ``w_local - w_global``, the sample count and local metrics (aggregates only, never records).

    Notes
    -----
    Mini-batches come from a fresh shuffle per epoch; ``local_steps`` continues into a new epoch
    when the data runs out; the last batch of an epoch may be smaller. The FedProx term
    ``mu/2 * ||w - w_global||^2`` is added to every batch loss when ``fedprox_mu > 0``.
    """
    settings = settings_with(spec.training, config)
    X_t, y_t = _as_tensors(X, y)
    seed = settings.seed if seed is None else int(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec, n_features=X_t.shape[1], seed=0)
        set_weights(model, anchor_weights if anchor_weights is not None else global_weights)
        anchor = [p.detach().clone() for p in model.parameters()]
        set_weights(model, global_weights)
        loss_before = _mean_loss(model, X_t, y_t)
        private = DPSGD.for_task(spec, settings, int(X_t.shape[0]))
        steps = _run_optimizer(model, X_t, y_t, settings, anchor, seed, private)
        trained = get_weights(model)
    update = {name: (trained[name] - np.asarray(global_weights[name], dtype=np.float32)).astype(np.float32)
              for name in trained}
    if not all(np.isfinite(a).all() for a in update.values()):
        raise NodeError("local training diverged (NaN or Inf weights); lower the learning rate")
    loss_after = _mean_loss(model, X_t, y_t)
    prob = predict_proba(model, X)
    metrics = {
        "loss_before": loss_before,
        "loss_after": loss_after,
        "accuracy_after": fm.accuracy(y, prob),
        "steps": float(steps),
    }
    if private is not None:
        metrics["noise_multiplier"] = private.noise_multiplier
    return Update(institution, update, int(X_t.shape[0]), metrics)


def _as_tensors(X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if X.ndim != 2:
        raise DataError(f"features must be 2-D (rows, columns), got shape {X.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{X.shape[0]} feature rows but {y.shape[0]} labels")
    if X.shape[0] == 0:
        raise DataError("no training rows")
    if not np.isfinite(X).all():
        raise DataError("features contain NaN or Inf")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0 or 1")
    return torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(y))


@torch.no_grad()
def _mean_loss(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    loss = F.binary_cross_entropy_with_logits(model(X).reshape(-1), y).item()
    model.train(was_training)
    return float(loss)


def _make_optimizer(model: torch.nn.Module, settings: TrainingSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )


def batch_schedule(n_rows: int, settings: TrainingSettings, seed: int):
    """Row indices of each mini-batch, in order: a fresh shuffle per epoch.

    Yields
    ------
    torch.Tensor of int64, shape (<= batch_size,)
    """
    batch = settings.batch_size
    batches_per_epoch = -(-n_rows // batch)
    if settings.local_steps is not None:
        total_steps = settings.local_steps
    elif settings.local_epochs is not None:
        total_steps = settings.local_epochs * batches_per_epoch
    else:
        raise ConfigError("training: set exactly one of local_steps and local_epochs")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_rows, generator=generator)
    position = 0
    for _ in range(total_steps):
        if position >= n_rows:
            order = torch.randperm(n_rows, generator=generator)
            position = 0
        yield order[position : position + batch]
        position += batch


@dataclass(frozen=True)
class DPSGD:
    """One round of DP-SGD at an institution: Poisson batches at ``sample_rate``, per-sample clipping, noise.

    Attributes
    ----------
    noise_multiplier : float
        Noise standard deviation over ``max_grad_norm`` (:func:`node.privacy.noise_multiplier`).
    max_grad_norm : float
    sample_rate : float
        Probability of each row being in a step's batch.
    expected_batch_size : int
        What the noisy gradient sum is divided by (Opacus's ``loss_reduction="mean"``).
    steps : int
    """

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    expected_batch_size: int
    steps: int

    @classmethod
    def for_task(cls, spec: TaskSpec, settings: TrainingSettings, n_rows: int) -> DPSGD | None:
        """The task's DP-SGD for ``n_rows`` local rows, or ``None`` when the task has no DP."""
        if not spec.privacy.enabled:
            return None
        rate = dp.sample_rate(settings, n_rows)
        return cls(noise_multiplier=dp.noise_multiplier(spec.privacy, settings, n_rows),
                   max_grad_norm=spec.privacy.max_grad_norm, sample_rate=rate,
                   expected_batch_size=max(1, round(rate * n_rows)), steps=dp.steps_per_round(settings, n_rows))

    def batches(self, n_rows: int, seed: int):
        """Poisson batches: each step keeps every row with probability ``sample_rate`` (may be empty).

        Yields
        ------
        torch.Tensor of int64, shape (rows drawn,)
        """
        generator = torch.Generator().manual_seed(seed)
        for _ in range(self.steps):
            yield torch.nonzero(torch.rand(n_rows, generator=generator) < self.sample_rate).reshape(-1)


def _run_optimizer(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    settings: TrainingSettings,
    anchor: list[torch.Tensor],
    seed: int,
    private: DPSGD | None = None,
) -> int:
    if isinstance(model, LogisticRegression):
        return _run_logreg_closed_form(model, X.numpy(), y.numpy(), settings, anchor, seed, private)
    if private is not None:
        return _run_opacus(model, X, y, settings, anchor, seed, private)
    return _run_autograd(model, X, y, settings, anchor, seed)


def _add_fedprox(params: Sequence[torch.Tensor], anchor: Sequence[torch.Tensor], mu: float) -> None:
    # FedProx: the gradient of mu/2 ||w - w_global||^2 is mu (w - w_global); adding it directly is the
    # same step as back-propagating the term, and cheaper. It reads no data, so DP leaves it alone.
    with torch.no_grad():
        for p, a in zip(params, anchor):
            if p.grad is not None:  # as the optimizer does, leave alone a parameter the loss did not reach
                p.grad.add_(p - a, alpha=mu)


def _run_opacus(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    settings: TrainingSettings,
    anchor: list[torch.Tensor],
    seed: int,
    private: DPSGD,
) -> int:
    """DP-SGD through Opacus: per-sample gradients (``GradSampleModule``), clipping and noise (``DPOptimizer``)."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    params = list(model.parameters())
    sampled = GradSampleModule(model, loss_reduction="sum")
    optimizer = DPOptimizer(
        _make_optimizer(model, settings), noise_multiplier=private.noise_multiplier,
        max_grad_norm=private.max_grad_norm, expected_batch_size=private.expected_batch_size,
        loss_reduction="mean", generator=torch.Generator().manual_seed(seed + 1),
    )
    sampled.train()
    steps = 0
    for rows in private.batches(X.shape[0], seed):
        steps += 1
        optimizer.zero_grad(set_to_none=True)
        loss = F.binary_cross_entropy_with_logits(sampled(X[rows]).reshape(-1), y[rows], reduction="sum")
        with warnings.catch_warnings():  # Opacus's hooks fire on module outputs: the inputs need no gradient
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            loss.backward()
        optimizer.pre_step()  # clip, sum, add noise, divide by the expected batch size: p.grad is private
        if settings.fedprox_mu > 0:
            _add_fedprox(params, anchor, settings.fedprox_mu)
        optimizer.original_optimizer.step()
    sampled._close()
    return steps


def _run_autograd(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    settings: TrainingSettings,
    anchor: list[torch.Tensor],
    seed: int,
) -> int:
    """Generic loop: any model, torch optimizer, BCE on logits, FedProx gradient added by hand."""
    optimizer = _make_optimizer(model, settings)
    mu = settings.fedprox_mu
    params = list(model.parameters())
    model.train()
    steps = 0
    for rows in batch_schedule(X.shape[0], settings, seed):
        steps += 1
        loss = F.binary_cross_entropy_with_logits(model(X[rows]).reshape(-1), y[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if mu > 0:
            _add_fedprox(params, anchor, mu)
        optimizer.step()
    return steps


def _run_logreg_closed_form(
    model: LogisticRegression, X: np.ndarray, y: np.ndarray, settings: TrainingSettings,
    anchor: list[torch.Tensor], seed: int, private: DPSGD | None = None,
) -> int:
    """The same optimization as the autograd loop for ``Linear(d, 1)``, with the gradient in
    closed form (about 10x faster: this is the benchmark's inner loop).

    Same batches (:func:`batch_schedule`), same update rules as ``torch.optim.SGD`` (momentum,
    L2 weight decay) and ``torch.optim.Adam``, FedProx gradient ``mu (w - w_global)``; float64
    arithmetic, float32 result. ``tests/node/test_training.py`` checks it against autograd.
    With ``private``, Opacus's DP-SGD step: the per-sample gradient of row i is ``x_i (p_i - y_i)`` (bias
    column included), its norm ``|p_i - y_i| ||x_i||``.
    """
    weight = model.linear.weight.detach().numpy().astype(np.float64).reshape(-1)
    bias = float(model.linear.bias.detach().numpy()[0])
    theta = np.append(weight, bias)  # (d + 1,): the bias rides along as a column of ones
    anchor_theta = np.append(anchor[0].numpy().astype(np.float64).reshape(-1), float(anchor[1].numpy()[0]))
    X1 = np.hstack([X.astype(np.float64), np.ones((X.shape[0], 1))])
    y64 = y.astype(np.float64)
    lr, mu, decay, momentum = settings.lr, settings.fedprox_mu, settings.weight_decay, settings.momentum
    adam = settings.optimizer == "adam"
    beta1, beta2, eps = 0.9, 0.999, 1e-8  # torch.optim.Adam defaults
    first = np.zeros_like(theta)
    second = np.zeros_like(theta)
    velocity: np.ndarray | None = None
    steps = 0
    noise = np.random.default_rng(seed + 1)
    row_norms = np.linalg.norm(X1, axis=1)
    schedule = batch_schedule(X.shape[0], settings, seed) if private is None else private.batches(X.shape[0], seed)
    for rows in schedule:
        steps += 1
        idx = rows.numpy()
        xb = X1[idx]
        prob = 0.5 * (1.0 + np.tanh(0.5 * (xb @ theta)))  # sigmoid without overflow
        if private is None:
            grad = xb.T @ (prob - y64[idx]) / idx.shape[0]
        else:
            residual = prob - y64[idx]
            clip = np.minimum(1.0, private.max_grad_norm / (np.abs(residual) * row_norms[idx] + 1e-6))
            grad = xb.T @ (residual * clip)
            grad += noise.normal(0.0, private.noise_multiplier * private.max_grad_norm, size=theta.shape)
            grad /= private.expected_batch_size
        if mu > 0:
            grad += mu * (theta - anchor_theta)
        if decay > 0:
            grad += decay * theta
        if adam:
            first = beta1 * first + (1.0 - beta1) * grad
            second = beta2 * second + (1.0 - beta2) * grad * grad
            denom = np.sqrt(second) / np.sqrt(1.0 - beta2**steps) + eps
            theta = theta - (lr / (1.0 - beta1**steps)) * first / denom
        else:
            if momentum > 0:
                velocity = grad.copy() if velocity is None else momentum * velocity + grad
                grad = velocity
            theta = theta - lr * grad
    with np.errstate(over="ignore"):  # a diverged run becomes Inf here and is refused by the caller
        theta32 = theta.astype(np.float32)
    with torch.no_grad():
        model.linear.weight.copy_(torch.from_numpy(theta32[:-1]).reshape(1, -1))
        model.linear.bias.copy_(torch.from_numpy(theta32[-1:]))
    return steps
