"""Every seed of the system, one derivation per purpose.

Simulation, benchmarks and deployment call the same functions, so a simulated federation and a deployed one
started from the same task spec and rules produce the same models bit for bit. Each seed is a 63-bit integer
derived by sha256 from a root and the purpose's coordinates: different purposes, rounds and institutions get
unrelated streams, and nothing depends on Python's hash randomisation or the order of calls.

Roots: the task spec's ``training.seed`` (initial model, local training: the model side of the task) and the
scoring rules' ``seed`` (contribution scoring); selection takes the aggregator's own seed.
"""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any sequence of printable parts (stable across machines and runs)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def initial_model_seed(task_seed: int) -> int:
    """Seed of round 1's global model (the task's model initialised), from the task spec's ``training.seed``."""
    return derive_seed(task_seed, "init")


def training_seed(task_seed: int, round_: int, institution: str) -> int:
    """Seed of one institution's local training in one round (shuffling, dropout).

    ``institution`` is the institution's stable id: its checksum address in a deployment; a simulation that
    wants a deployment's exact models names its institutions by their addresses.
    """
    return derive_seed(task_seed, "round", round_, "institution", institution)


def centralized_seed(task_seed: int) -> int:
    """Seed of one-site training (the pooled and local-only baselines)."""
    return derive_seed(task_seed, "centralized")


def scoring_seed(rules_seed: int, round_: int) -> int:
    """Seed of a round's contribution estimator, from the bounty's scoring rules: fixed before anyone trains."""
    return derive_seed(rules_seed, "score", round_)


def personalization_seed(task_seed: int, step: str, *coordinates: int) -> int:
    """Seed of one step of an institution's personalization on its own rows: ``"carve"`` (validation carving k),
    ``"finetune"``, ``"ditto"`` (round r), ``"local-only"`` and ``"local-only-init"`` (its own baseline),
    ``"held-out"`` (the rows it measures its own gain on)."""
    return derive_seed(task_seed, "personal", step, *coordinates)


def selection_seed(seed: int, bounty_id: int, round_: int) -> int:
    """Seed of the aggregator's invitation sampling for one round."""
    return derive_seed(seed, "selection", bounty_id, round_)
