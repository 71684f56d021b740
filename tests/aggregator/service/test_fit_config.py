"""Each round's fit config travels from the bounty's rules to the nodes: a FedProx bounty's institutions train with
the bounty's mu, through the real service over HTTP and the real node runner."""

from __future__ import annotations

import numpy as np
import pytest

from aggregator.rules import resolve_rules
from aggregator.service.app import create_app
from aggregator.service.coordinator import Coordinator
from fedcore import codec
from fedcore.errors import ConfigError, NodeError
from fedcore.protocol import FitConfig, RoundInfo
from fedcore.rules import RoundRules
from fedcore.seeds import training_seed
from node.remote import AggregatorClient
from node.runner import NodeRoundStatus, NodeRunner
from node.training import train_local
from tests.aggregator.service.conftest import SPEC
from tests.node.test_runner import serve

MU = 5.0


def fit_config(strategy: str, params: dict) -> FitConfig:
    return FitConfig.model_validate(resolve_rules(strategy=strategy, strategy_params=params).fit_config())


def test_fit_config_comes_from_the_rules():
    assert fit_config("fedprox", {"mu": 0.25}) == FitConfig(fedprox_mu=0.25)
    assert fit_config("fedavg", {}) == FitConfig()
    assert fit_config("fedavg", {"fit_config": {"lr": 0.5, "local_steps": 7}}).overrides() == {"lr": 0.5, "local_steps": 7}
    with pytest.raises(ConfigError, match="mu must be >= 0"):
        fit_config("fedprox", {"mu": -1})


def test_a_fedprox_bounty_s_node_trains_with_the_bounty_s_mu(service_world, counting_compute, tmp_path):
    h = service_world.harness(tmp_path, strategy="fedprox", strategy_params={"mu": MU})
    context = h.context()
    assert Coordinator(context, compute=counting_compute).step() == "opened"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    received = []

    def recording_trainer(weights, X_, y_, spec, *, seed, config):
        received.append(config)
        return train_local(weights, X_, y_, spec, seed=seed, config=config)

    with serve(create_app(context=context, run_coordinator=False)) as url, AggregatorClient(url, retries=0) as client:
        info = client.current_round(h.bounty_id)
        assert isinstance(info, RoundInfo) and info.fit_config == FitConfig(fedprox_mu=MU)
        runner = NodeRunner(ledger=h.ledger, aggregator=client, account=h.insts[0], bounty_id=h.bounty_id, X=X, y=y,
                            state_dir=tmp_path / "node", poll_seconds=0, progress=False, trainer=recording_trainer)
        with runner:
            record = runner.poll_once()

    assert record.status == NodeRoundStatus.UPLOADED
    assert received == [{"fedprox_mu": MU}]
    (upload,) = context.state.uploads(1)
    uploaded = codec.decode(context.blobs.get("updates", upload.sha256))
    global_weights = codec.decode(context.blobs.get("models", context.state.round(1).global_model_sha))
    seed = training_seed(SPEC.training.seed, 1, h.insts[0].address)
    with_mu = train_local(global_weights, X, y, SPEC, seed=seed, config={"fedprox_mu": MU}).arrays
    without = train_local(global_weights, X, y, SPEC, seed=seed).arrays
    assert all(np.array_equal(uploaded[k], with_mu[k]) for k in uploaded)  # what the node sent is mu-training
    assert any(not np.array_equal(uploaded[k], without[k]) for k in uploaded)  # and not mu = 0 training


def test_an_aggregator_serving_other_rules_than_the_bounty_s_is_caught_by_the_node(harness, tmp_path):
    """A dishonest aggregator (the real service, its rules swapped after the startup check) serves another scoring
    seed: the node compares the rules' hash with the chain's and refuses before training or committing."""
    h = harness
    context = h.context()
    assert Coordinator(context).step() == "opened"
    context.rules = RoundRules.from_dict({**context.rules.to_dict(), "seed": context.rules.seed + 1})
    X = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    with serve(create_app(context=context, run_coordinator=False)) as url, AggregatorClient(url, retries=0) as client:
        runner = NodeRunner(ledger=h.ledger, aggregator=client, account=h.insts[0], bounty_id=h.bounty_id, X=X, y=y,
                            state_dir=tmp_path / "node", poll_seconds=0, progress=False)
        with pytest.raises(NodeError, match="round rules .* chain fixed"):
            runner.open()
    assert context.state.uploads(1) == [] and h.ledger.commitment_of(h.bounty_id, 1, h.insts[0].address) == bytes(32)


def test_a_simulation_and_a_federation_through_the_service_produce_the_same_models(service_world, tmp_path):
    """Three rounds through the real service, real node runners and the embedded chain, and three rounds of the
    in-process simulation with the same task, rules and institutions (named by their addresses): the same global
    model hashes round by round, and the same scores."""
    from fedledger.simulation import Institution, run_simulation

    h = service_world.harness(tmp_path, rounds=3)
    context = h.context()
    coordinator = Coordinator(context)
    rng = np.random.default_rng(7)
    data = {}
    for inst in h.insts:
        X = rng.normal(size=(25, 3)).astype(np.float32)
        data[inst.address] = (X, (X @ np.array([1.0, -0.5, 0.25]) > 0).astype(np.float32))
    with serve(create_app(context=context, run_coordinator=False)) as url, AggregatorClient(url, retries=0) as client:
        runners = [NodeRunner(ledger=h.ledger, aggregator=client, account=inst, bounty_id=h.bounty_id,
                              X=data[inst.address][0], y=data[inst.address][1], state_dir=tmp_path / inst.address,
                              poll_seconds=0, progress=False).open() for inst in h.insts]
        for _ in range(3):
            assert coordinator.step() == "opened"
            for runner in runners:
                assert runner.poll_once().status == NodeRoundStatus.UPLOADED
            assert coordinator.run_until("finalized") == "finalized"
        for runner in runners:
            runner.close()
    deployed = [bytes(h.ledger.round(h.bounty_id, r).new_model_hash) for r in (1, 2, 3)]

    institutions = [Institution(address, X, y) for address, (X, y) in data.items()]
    simulated = run_simulation(institutions, SPEC, context.rules, rounds=3, seed=SPEC.training.seed,
                               validation=(context.validation.X, context.validation.y), evaluate_every_round=False)
    assert [bytes(r.outcome.model_hash) for r in simulated.rounds] == deployed
    assert [r.outcome.fixed_point for r in simulated.rounds] == [context.state.round(r).fixed_point_scores
                                                                 for r in (1, 2, 3)]
