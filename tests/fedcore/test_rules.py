"""Round rules: resolved once with every default spelled out, hashed, and read back identically."""

import json

import pytest

from aggregator.rules import resolve_rules, strategy_from_rules
from aggregator.strategies import STRATEGIES
from fedcore.errors import ConfigError
from fedcore.rules import RULES_VERSION, RoundRules, rules_hash, rules_hash_hex
from fedcore.seeds import scoring_seed


def test_resolved_rules_spell_out_every_default():
    rules = resolve_rules(strategy="fedprox", strategy_params={"mu": 0.1}, estimator="gtg", seed=9)
    assert rules.strategy_params["mu"] == 0.1 and rules.strategy_params["server_lr"] == 1.0
    # the estimator's own keyword defaults are in the rules, not only the overrides
    assert {"sampling", "max_permutations", "min_permutations", "round_truncation_threshold"} <= set(rules.estimator_params)
    assert rules.utility_metric == "neg_loss" and rules.seed == 9
    assert rules.round_seed(3) == scoring_seed(9, 3)
    assert rules.fit_config() == {"fedprox_mu": 0.1}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_rebuilt_exactly_from_its_rules(name):
    rules = resolve_rules(strategy=name)
    assert strategy_from_rules(rules).hyperparameters() == dict(rules.strategy_params)
    again = RoundRules.from_json(rules.to_json())
    assert again == rules and rules_hash(again) == rules_hash(rules)


def test_the_hash_changes_with_anything_that_decides_a_score():
    base = resolve_rules(seed=1)
    others = [resolve_rules(seed=2), resolve_rules(seed=1, estimator="tmc"), resolve_rules(seed=1, utility_metric="auc"),
              resolve_rules(seed=1, estimator_params={"max_permutations": 77}),
              resolve_rules(seed=1, strategy="fedprox")]
    assert len({rules_hash(r) for r in [base, *others]}) == len(others) + 1
    assert rules_hash_hex(base) == "0x" + rules_hash(base).hex()


def test_rules_files_must_be_complete_and_known(tmp_path):
    rules = resolve_rules()
    data = rules.to_dict()
    for broken, message in (({k: v for k, v in data.items() if k != "seed"}, "missing field"),
                            ({**data, "extra": 1}, "unknown field"),
                            ({**data, "version": 99}, "not supported"),
                            ({**data, "utility_metric": "f1"}, "utility_metric"),
                            ({**data, "estimator_params": {**data["estimator_params"], "seed": 3}}, "seed")):
        path = tmp_path / "rules.json"
        path.write_text(json.dumps(broken))
        with pytest.raises(ConfigError, match=message):
            RoundRules.load(path)
    with pytest.raises(ConfigError, match="unknown strategy"):
        resolve_rules(strategy="fedmagic")
    with pytest.raises(ConfigError, match="unknown contribution estimator"):
        resolve_rules(estimator="oracle")
    path = tmp_path / "ok.json"
    rules.save(path)
    assert RoundRules.load(path) == rules


def test_row_spread_is_a_hashed_rule_that_needs_a_metric_that_is_a_mean_over_rows():
    on, off = resolve_rules(seed=1), resolve_rules(seed=1, gate={"row_spread": False})
    assert on.row_spread and not off.row_spread and on.version == RULES_VERSION == 5
    assert rules_hash(on) != rules_hash(off)
    auc = resolve_rules(seed=1, utility_metric="auc")  # no per-row split: off unless asked
    assert not auc.row_spread
    with pytest.raises(ConfigError, match="row_spread needs a utility metric that is a mean over rows"):
        resolve_rules(seed=1, utility_metric="auc", gate={"row_spread": True})
    with pytest.raises(ConfigError, match="row_spread must be true or false"):
        RoundRules.from_dict({**on.to_dict(), "row_spread": 1})
