"""The round coordinator on a real embedded chain: a whole bounty, closing rules, copied hashes, selection,
optimizer state, startup checks, and restart safety (a crash between any two steps loses nothing and repeats
nothing on chain).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from aggregator.service.coordinator import Coordinator
from aggregator.service.selection import eligible, idle_invitees, select_clients
from aggregator.service.settings import load_settings
from aggregator.service.state import StateDB
from aggregator.strategies import make_strategy
from fedcore import codec
from fedcore.errors import AggregatorError, ConfigError
from fedcore.protocol import RejectionCode
from fedcore.rules import RoundRules
from fedcore.types import Update
from ledger.chain import fund_account
from ledger.client import BountyStatus, Institution
from tests.aggregator.service.conftest import MIN_STAKE, ONE_ETH, local_account


def finalized_events(h, round_: int) -> list:
    logs = h.ledger.contract.events.RoundFinalized().get_logs(
        from_block=0, argument_filters={"bountyId": h.bounty_id, "round": round_})
    return [log for log in logs if log["args"]["bountyId"] == h.bounty_id and log["args"]["round"] == round_]


def scored_on_chain(h, round_: int) -> dict[str, int]:
    logs = h.ledger.contract.events.ContributionScored().get_logs(
        from_block=0, argument_filters={"bountyId": h.bounty_id, "round": round_})
    return {log["args"]["institution"]: log["args"]["score"] for log in logs
            if log["args"]["bountyId"] == h.bounty_id and log["args"]["round"] == round_}


def play_uploads(h, client, round_: int, who, samples=(10, 30, 60)):
    """Each of ``who`` commits and uploads a distinct update; returns {address: bytes}."""
    sent = {}
    for i, account in enumerate(who):
        data = h.update(0.01 * (i + 1) * round_)
        h.commit(account, round_, data, samples[i % len(samples)])
        assert h.upload(client, account, round_, data).status_code == 202
        sent[account.address] = data
    return sent


def test_a_whole_bounty_is_reproducible_from_what_the_service_serves(harness, counting_compute):
    h = harness
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    for round_ in (1, 2):
        assert coordinator.step() == "opened"
        play_uploads(h, client, round_, h.insts)
        # every invited institution uploaded: the round closes without waiting for the window
        assert coordinator.run_until("finalized") == "finalized"
        record = context.state.round(round_)
        chain_round = h.ledger.round(h.bounty_id, round_)
        assert chain_round.finalized and bytes(chain_round.new_model_hash).hex() == record.new_model_sha
        assert scored_on_chain(h, round_) == record.fixed_point_scores
        assert len(finalized_events(h, round_)) == 1

        # an auditor recomputes the aggregate from the HTTP API alone, bit for bit
        detail = client.get(f"/bounties/{h.bounty_id}/rounds/{round_}").json()
        assert detail["status"] in ("finalized", "completed") and detail["finalize_tx"].startswith("0x")
        assert [u["institution"] for u in detail["used"]] == sorted(i.address for i in h.insts)
        samples = dict(zip((i.address for i in h.insts), (10, 30, 60)))
        assert {u["institution"]: u["num_samples"] for u in detail["used"]} == samples
        global_bytes = client.get(f"/bounties/{h.bounty_id}/models/{detail['global_model_hash']}").content
        results = [
            Update(u["institution"], codec.decode(client.get(
                f"/bounties/{h.bounty_id}/rounds/{round_}/updates/{u['sha256'][2:]}").content), u["num_samples"])
            for u in detail["used"]
        ]
        rules = RoundRules.from_dict(detail["settings"]["rules"])
        assert rules == context.rules and detail["settings"]["seed"] == rules.round_seed(round_)
        strategy = make_strategy(rules.strategy, **rules.strategy_params)
        weights = strategy.aggregate_fit(round_, codec.decode(global_bytes), results).weights
        assert "0x" + hashlib.sha256(codec.encode(weights)).hexdigest() == detail["new_model_hash"]
        assert detail["scores"]["fixed_point"] == {k: str(v) for k, v in record.fixed_point_scores.items()}
    assert coordinator.step() == "completed"
    assert h.ledger.bounty(h.bounty_id).status == BountyStatus.COMPLETED
    current = client.get(f"/bounties/{h.bounty_id}/rounds/current").json()
    assert current["status"] == "completed" and current["round"] == 2
    assert counting_compute.calls == 2
    # round 2 started from round 1's model, as the contract requires
    assert context.state.round(2).global_model_sha == context.state.round(1).new_model_sha


def test_crash_after_scoring_finalizes_exactly_once_with_the_saved_scores(harness, counting_compute):
    h = harness
    first = h.context()
    client = h.client(first)
    coordinator = Coordinator(first, compute=counting_compute)
    coordinator.step()
    play_uploads(h, client, 1, h.insts[:2])
    h.advance()
    assert coordinator.run_until("scored") == "scored"
    saved = first.state.round(1)
    assert saved.step == "scored" and not h.ledger.round(h.bounty_id, 1).finalized
    first.close()  # the process dies here, before finalizeRound

    def must_not_compute(*args):
        raise AssertionError("a restart must reuse the saved scores")

    second = h.context()
    restarted = Coordinator(second, compute=must_not_compute)
    assert restarted.step() == "finalized"
    assert len(finalized_events(h, 1)) == 1
    assert scored_on_chain(h, 1) == saved.fixed_point_scores
    assert bytes(h.ledger.round(h.bounty_id, 1).new_model_hash).hex() == saved.new_model_sha
    assert restarted.step() == "opened"  # round 2, not a second finalize
    assert len(finalized_events(h, 1)) == 1 and counting_compute.calls == 1
    assert [j["step"] for j in second.state.journal(1)] == ["opening", "open", "scoring", "scored", "finalized"]


def test_crash_before_the_open_transaction_opens_once(harness, counting_compute, monkeypatch):
    h = harness
    first = h.context()
    monkeypatch.setattr(first.ledger, "open_round", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        Coordinator(first, compute=counting_compute).step()
    assert first.state.round(1).step == "opening" and h.ledger.bounty(h.bounty_id).rounds_opened == 0
    assert h.client(first).get(f"/bounties/{h.bounty_id}/rounds/current").json()["status"] == "waiting"
    monkeypatch.undo()
    second = h.context()
    coordinator = Coordinator(second, compute=counting_compute)
    assert coordinator.step() == "opened" and coordinator.step() == "waiting"
    assert h.ledger.bounty(h.bounty_id).rounds_opened == 1
    assert second.state.round(1).global_model_sha == first.state.round(1).global_model_sha


def test_crash_after_the_open_transaction_does_not_open_twice(harness, counting_compute, monkeypatch):
    h = harness
    first = h.context()

    def die(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(first.state, "mark_open", die)
    with pytest.raises(KeyboardInterrupt):
        Coordinator(first, compute=counting_compute).step()
    assert h.ledger.bounty(h.bounty_id).rounds_opened == 1
    assert first.state.round(1).step == "opening"
    monkeypatch.undo()

    second = h.context()
    coordinator = Coordinator(second, compute=counting_compute)
    assert coordinator.step() == "opened"  # recorded from the chain, not sent again
    assert h.ledger.bounty(h.bounty_id).rounds_opened == 1
    record = second.state.round(1)
    assert record.step == "open" and record.open_tx and record.open_block
    assert coordinator.step() == "waiting"


def test_crash_after_the_finalize_transaction_records_it_from_the_chain(harness, counting_compute, monkeypatch):
    h = harness
    first = h.context()
    client = h.client(first)
    coordinator = Coordinator(first, compute=counting_compute)
    coordinator.step()
    play_uploads(h, client, 1, h.insts)
    assert coordinator.run_until("scored") == "scored"
    monkeypatch.setattr(first.state, "mark_finalized", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        coordinator.step()
    assert h.ledger.round(h.bounty_id, 1).finalized
    monkeypatch.undo()

    second = h.context()
    assert Coordinator(second, compute=counting_compute).step() == "opened"
    record = second.state.round(1)
    assert record.step == "finalized" and record.finalize_tx == "0x" + bytes(finalized_events(h, 1)[0]["transactionHash"]).hex()
    assert len(finalized_events(h, 1)) == 1 and h.ledger.bounty(h.bounty_id).rounds_opened == 2


def test_window_then_grace_and_who_is_left_out(harness, counting_compute):
    """Identical updates committed by two institutions are both used (each commitment binds its committer); a copied
    commitment is refused at the door and its copier left out; a committer that never uploads is left out."""
    h = harness
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    coordinator.step()
    same = h.update(0.3)
    h.commit(h.insts[0], 1, same)
    h.commit(h.insts[1], 1, same)  # the same bytes, committed honestly: a different commitment
    victims = h.ledger.commitment_of(h.bounty_id, 1, h.insts[0].address)
    assert victims != h.ledger.commitment_of(h.bounty_id, 1, h.insts[1].address)
    h.as_(h.insts[2]).commit_update(h.bounty_id, 1, victims, 10)  # inst2 copies inst0's commitment
    assert h.upload(client, h.insts[0], 1, same).status_code == 202
    assert h.upload(client, h.insts[1], 1, same).status_code == 202
    copied = h.upload(client, h.insts[2], 1, same)
    assert copied.status_code == 409 and copied.json()["code"] == RejectionCode.HASH_MISMATCH
    assert coordinator.step() == "waiting"  # window open, not everyone uploaded
    h.advance()
    assert coordinator.run_until("finalized") == "finalized"
    record = context.state.round(1)
    sha = hashlib.sha256(same).hexdigest()
    assert record.used == [{"institution": i.address, "sha256": sha, "num_samples": 10}
                           for i in sorted(h.insts[:2], key=lambda i: i.address)]
    assert list(record.excluded) == [h.insts[2].address]  # with the refusal it got at upload
    assert record.excluded[h.insts[2].address].startswith("committed; its upload was refused (hash_mismatch: ")
    assert set(scored_on_chain(h, 1)) == {h.insts[0].address, h.insts[1].address}
    decisions = {d.institution: d for d in context.state.decisions(1)}
    assert decisions[h.insts[0].address].used and decisions[h.insts[1].address].used
    assert not decisions[h.insts[2].address].used


def test_a_sample_count_beyond_64_bits_is_excluded_and_saved_and_the_round_goes_on(harness, counting_compute):
    """sampleCount 2^63 is valid on chain: the round excludes it by the task's range and SQLite stores it (as text)."""
    h = harness
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    coordinator.step()
    play_uploads(h, client, 1, h.insts[:2])
    greedy = h.update(50.0)
    h.commit(h.insts[2], 1, greedy, 2**63)
    assert h.upload(client, h.insts[2], 1, greedy).status_code == 202
    h.advance()
    assert coordinator.run_until("finalized") == "finalized"
    record = context.state.round(1)
    assert [u["institution"] for u in record.used] == sorted(i.address for i in h.insts[:2])
    assert record.excluded == {h.insts[2].address: f"declared {2**63} samples, outside the task's range [1, 1000000]"}
    assert set(scored_on_chain(h, 1)) == {i.address for i in h.insts[:2]}
    decisions = {d.institution: d for d in StateDB(context.settings.state_dir).decisions(1)}
    assert decisions[h.insts[2].address].num_samples == 2**63 and not decisions[h.insts[2].address].used


@pytest.fixture
def bot(service_world, request):
    """A registered institution (minimum stake) for this test only: it leaves at the end, so later tests' rounds
    do not invite it."""
    account = local_account(f"bot/{request.node.name}")
    fund_account(service_world.w3, account.address, ONE_ETH)
    ledger = service_world.ledger.as_sender(account)
    if not service_world.ledger.institution(account.address).registered:
        ledger.join("bot", "", stake=MIN_STAKE)
    yield account
    ledger.request_leave()


def context_with(h, *extra):
    """A context that knows the joined institutions plus ``extra`` (the harness seeds its own institutions only)."""
    context = h.context()
    context.ledger.seed_institutions([i.address for i in [*h.insts, *extra]], h.w3.eth.block_number)
    return context


def test_a_round_closes_on_the_invited_set_not_on_the_first_uploads(harness, counting_compute, bot):
    """A registered bot that commits and uploads first does not close the round: it closes once every invitee
    uploaded (or at the window's end), and every invitee is used and scored."""
    h = harness
    context = context_with(h, bot)
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    assert coordinator.step() == "opened"
    assert set(context.state.round(1).selected) == {i.address for i in h.insts} | {bot.address}
    noise = h.update(5.0)
    h.commit(bot, 1, noise)
    assert h.upload(client, bot, 1, noise).status_code == 202
    assert coordinator.step() == "waiting"  # the first upload closes nothing: the invitees still have the window
    play_uploads(h, client, 1, h.insts)
    assert coordinator.run_until("finalized") == "finalized"
    assert set(scored_on_chain(h, 1)) == {i.address for i in h.insts} | {bot.address}


def test_an_idle_invitee_costs_one_window_and_is_not_invited_again(harness, counting_compute, bot):
    h = harness
    context = context_with(h, bot)
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    assert coordinator.step() == "opened"
    assert bot.address in context.state.round(1).selected
    play_uploads(h, client, 1, h.insts)
    assert coordinator.step() == "waiting"  # the idle bot holds the round until its window ends, once
    h.advance()
    assert coordinator.run_until("finalized") == "finalized"
    assert coordinator.step() == "opened"
    assert context.state.round(2).selected == sorted(i.address for i in h.insts)
    play_uploads(h, client, 2, h.insts)
    assert coordinator.step() == "closed"  # every invitee uploaded: no wait for the window


def test_an_institution_slashed_below_the_minimum_stake_is_not_invited():
    ok = Institution("0x" + "01" * 20, MIN_STAKE, 5000, 0, 0, True, True)
    slashed = Institution("0x" + "02" * 20, MIN_STAKE - 1, 9000, 0, 0, True, True)
    assert list(eligible([ok, slashed], min_reputation=0, min_stake=MIN_STAKE)) == [ok.address]


def test_idle_invitees_are_those_invited_without_an_accepted_upload():
    a, b, c = "0xAa" + "00" * 19, "0xBb" + "00" * 19, "0xCc" + "00" * 19
    assert idle_invitees([([a, b], [a]), ([a, c], [a, c])]) == {b.lower()}
    insts = [Institution(x, MIN_STAKE, 5000, 0, 0, True, True) for x in (a, b, c)]
    assert sorted(eligible(insts, min_reputation=0, min_stake=MIN_STAKE, idle={b.lower()})) == [a, c]


def test_reputation_selection_invites_k_and_refuses_the_others(service_world, tmp_path, counting_compute):
    h = service_world.harness(tmp_path)
    context = h.context(selection="reputation", clients_per_round=2, seed=7)
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    coordinator.step()
    selected = context.state.round(1).selected
    assert len(selected) == 2 and selected == sorted(selected)
    assert client.get(f"/bounties/{h.bounty_id}/rounds/current").json()["selected"] == selected
    outsider = next(i for i in h.insts if i.address not in selected)
    data = h.update(0.5)
    h.commit(outsider, 1, data)
    response = h.upload(client, outsider, 1, data)
    assert response.status_code == 403 and "not selected" in response.json()["detail"]
    context.close()


def test_selection_is_seeded_and_respects_minimum_reputation():
    insts = [Institution(f"0x{i:040x}", 1, rep, 0, 0, True, True) for i, rep in enumerate([0, 2000, 5000, 9000, 7000])]
    leaving = Institution("0x" + "ff" * 20, 1, 9999, 0, 123, True, True)
    candidates = eligible([*insts, leaving], min_reputation=2000, min_stake=1)
    assert sorted(candidates) == sorted(i.address for i in insts[1:])
    draw = dict(mode="reputation", k=2, seed=3, bounty_id=1, round_=4)
    assert select_clients(candidates, **draw) == select_clients(candidates, **draw)
    assert len(select_clients(candidates, **draw)) == 2
    assert select_clients(candidates, mode="all", k=None, seed=0, bounty_id=1, round_=1) == sorted(candidates)
    counts = {a: 0 for a in candidates}
    for round_ in range(300):
        for a in select_clients(candidates, mode="reputation", k=1, seed=0, bounty_id=1, round_=round_):
            counts[a] += 1
    assert counts[insts[3].address] > counts[insts[1].address]  # 9000 bps is drawn more often than 2000


def test_server_optimizer_state_carries_over(service_world, tmp_path, counting_compute):
    h = service_world.harness(tmp_path, strategy="fedadam", strategy_params={"server_lr": 0.05})
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context, compute=counting_compute)
    for round_ in (1, 2):
        coordinator.step()
        play_uploads(h, client, round_, h.insts)
        assert coordinator.run_until("finalized") == "finalized"
    first, second = context.state.round(1), context.state.round(2)
    assert first.state_before_sha is None and first.state_after_sha
    assert second.state_before_sha == first.state_after_sha
    assert dict(counting_compute.inputs[0].strategy_state) == {}
    state = counting_compute.inputs[1].strategy_state
    assert int(state["step"]) == 1 and counting_compute.rules[1].strategy_params["server_lr"] == 0.05
    download = client.get(f"/bounties/{h.bounty_id}/states/{first.state_after_sha}")
    assert download.status_code == 200
    assert np.array_equal(codec.decode(download.content)["step"], state["step"])


def h_rules(h) -> RoundRules:
    return RoundRules.load(h.rules_path)


def test_startup_refuses_with_one_line(harness, service_world, tmp_path):
    h = harness
    with pytest.raises(ConfigError, match="wrong password for keystore"):
        h.context(password="nope")
    with pytest.raises(ConfigError, match="does not exist"):
        h.context(bounty_id=999)
    other = tmp_path / "validation.csv"
    other.write_text(h.validation_path.read_text().replace("1\n", "0\n", 1))
    with pytest.raises(ConfigError, match="validationSetHash"):
        h.context(validation_path=other)
    task = tmp_path / "task.json"
    task.write_text(h.task_path.read_text().replace("service-test", "another task"))
    with pytest.raises(ConfigError, match="taskSpecHash"):
        h.context(task_path=task)
    foreign = service_world.new_bounty(aggregator=h.insts[0].address)
    with pytest.raises(ConfigError, match="is not bounty .* aggregator"):
        h.context(bounty_id=foreign)
    # rules other than the bounty's (another scoring seed, another scorer) are refused before serving
    for other_rules in (RoundRules.from_dict({**h_rules(h).to_dict(), "seed": 12}),
                        RoundRules.from_dict({**h_rules(h).to_dict(), "estimator": "loo", "estimator_params": {}})):
        path = tmp_path / f"rules-{other_rules.seed}-{other_rules.estimator}.json"
        other_rules.save(path)
        with pytest.raises(ConfigError, match="rulesHash"):
            h.context(rules_path=path)
    h.context().close()
    with pytest.raises(ConfigError, match="belongs to bounty_id"):
        h.context(bounty_id=service_world.new_bounty())
    with pytest.raises(ConfigError, match="missing setting --keystore"):
        load_settings({"bounty_id": 1, "task_path": "t", "validation_path": "v", "rules_path": "r"}, environ={})
    with pytest.raises(ConfigError, match="needs --clients-per-round"):
        h.settings(selection="reputation")


def test_settings_come_from_the_environment(tmp_path):
    env = {"FEDLEDGER_BOUNTY": "3", "FEDLEDGER_TASK": "t.json", "FEDLEDGER_VALIDATION": "v.csv",
           "FEDLEDGER_KEYSTORE": "k.json", "FEDLEDGER_PASSWORD": "pw", "FEDLEDGER_PORT": "9001",
           "FEDLEDGER_SEED": "2", "FEDLEDGER_RULES": "rules.json", "FEDLEDGER_WALL_CLOCK": "false",
           "FEDLEDGER_UNRELATED": "ignored"}
    settings = load_settings({"port": 9002}, environ=env)
    assert settings.bounty_id == 3 and settings.port == 9002 and settings.seed == 2
    assert str(settings.rules_path) == "rules.json" and settings.wall_clock is False
    assert settings.resolve_password() == "pw" and "password" not in settings.public()
    with pytest.raises(ConfigError, match="invalid --port"):
        load_settings({"port": "eighty"}, environ=env)


def test_state_db_refuses_uploads_outside_an_open_round(tmp_path):
    db = StateDB(tmp_path)
    db.insert_opening(1, global_model_sha="00" * 32, selected=[], settings={}, state_before_sha=None)
    with pytest.raises(AggregatorError, match="not open"):
        db.accept_upload(1, "0xA", "11" * 32, 10)
    db.mark_open(1, commit_deadline=10, opened_at=1, open_tx=None, open_block=None)
    stored = []
    record, created = db.accept_upload(1, "0xA", "11" * 32, 10, lambda: stored.append(1))
    assert created and stored == [1]
    assert db.accept_upload(1, "0xA", "11" * 32, 10, lambda: stored.append(2)) == (record, False) and stored == [1]
    db.begin_scoring(1)
    with pytest.raises(AggregatorError, match="scoring"):
        db.accept_upload(1, "0xB", "22" * 32, 10, lambda: stored.append(3))
    assert stored == [1] and [u.institution for u in db.uploads(1)] == ["0xA"]
    db.close()


def _gasless_headers(h, account, round_: int, data: bytes, samples: int, epsilon: int = 0) -> dict:
    from fedcore.commitments import bind_commitment, sign_commitment
    from fedcore.protocol import COMMITMENT_SIGNATURE_HEADER, DECLARED_EPSILON_HEADER, SAMPLE_COUNT_HEADER

    chain_id, contract = h.w3.eth.chain_id, h.ledger.address
    commitment = bind_commitment(chain_id=chain_id, contract=contract, bounty_id=h.bounty_id, round_=round_,
                                 institution=account.address, update_sha256=hashlib.sha256(data).digest())
    signature = sign_commitment(account, chain_id=chain_id, contract=contract, bounty_id=h.bounty_id, round_=round_,
                                commitment=commitment, sample_count=samples, declared_epsilon=epsilon)
    return {COMMITMENT_SIGNATURE_HEADER: "0x" + signature.hex(), SAMPLE_COUNT_HEADER: str(samples),
            DECLARED_EPSILON_HEADER: str(epsilon)}


def test_gasless_commitments_are_posted_in_one_batch_beside_a_self_commit(harness):
    h = harness
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context)
    assert coordinator.step() == "opened"
    gasless, self_committer = h.insts[:2], h.insts[2]
    sent = {}
    for i, account in enumerate(gasless):
        data = h.update(0.01 * (i + 1))
        headers = {"Content-Type": "application/octet-stream", "X-Update-Sha256": hashlib.sha256(data).hexdigest(),
                   "X-Signature": h.sign(account, 1, data), **_gasless_headers(h, account, 1, data, 20 + i)}
        # A commitment signed by someone else, or for other numbers, is refused and stores nothing.
        forged = {**headers, **_gasless_headers(h, h.insts[2], 1, data, 20 + i)}
        assert client.post(f"/bounties/{h.bounty_id}/rounds/1/updates", content=data,
                           headers=forged).json()["code"] == RejectionCode.BAD_SIGNATURE
        response = client.post(f"/bounties/{h.bounty_id}/rounds/1/updates", content=data, headers=headers)
        assert response.status_code == 202, response.text
        sent[account.address] = data
    assert h.ledger.commitment_of(h.bounty_id, 1, gasless[0].address) == bytes(32)  # not on chain yet
    data = h.update(0.03)
    h.commit(self_committer, 1, data, 60)  # the censorship path: committing on chain oneself still works
    assert h.upload(client, self_committer, 1, data).status_code == 202
    assert coordinator.run_until("finalized") == "finalized"
    commitments = h.ledger.commitments(h.bounty_id, 1)
    assert {a: c.sample_count for a, c in commitments.items()} == {
        gasless[0].address: 20, gasless[1].address: 21, self_committer.address: 60}
    batch_txs = {c.tx_hash for a, c in commitments.items() if a != self_committer.address}
    assert len(batch_txs) == 1  # both gasless commitments went on chain in one transaction
    assert set(scored_on_chain(h, 1)) == {a.address for a in h.insts}


def test_a_signed_commitment_the_contract_would_refuse_never_reaches_the_batch(harness):
    """Two invited institutions are slashed below the minimum stake during the round: one before its gasless upload
    (refused at upload, 403 not_eligible, nothing stored), one after (its upload was fine; its commitment is left out
    of the batch). The honest institutions' commitments go on chain in one transaction, not one each."""
    h = harness
    context = h.context(wall_clock=True, commit_batch_margin=10)
    client = h.client(context)
    coordinator = Coordinator(context)
    late, early = local_account("slashed-before-upload"), local_account("slashed-after-upload")
    for account in (late, early):
        fund_account(h.w3, account.address, ONE_ETH)
        h.as_(account).join(account.address, "", stake=MIN_STAKE)
    assert coordinator.step() == "opened"
    assert {late.address, early.address} <= set(context.state.round(1).selected)  # eligible when invited
    governance = h.as_(h.w3.eth.accounts[0])
    url = f"/bounties/{h.bounty_id}/rounds/1/updates"

    def gasless_upload(account, data: bytes):
        headers = {"Content-Type": "application/octet-stream", "X-Update-Sha256": hashlib.sha256(data).hexdigest(),
                   "X-Signature": h.sign(account, 1, data), **_gasless_headers(h, account, 1, data, 20)}
        return client.post(url, content=data, headers=headers)

    governance.slash(late.address, 1, hashlib.sha256(b"evidence").digest())
    refused = gasless_upload(late, h.update(0.5))
    assert (refused.status_code, refused.json()["code"]) == (403, RejectionCode.NOT_ELIGIBLE), refused.text
    assert "below the minimum stake" in refused.json()["detail"]
    assert context.state.upload_of(1, late.address) is None and context.state.signed_commitments(1) == []
    assert gasless_upload(early, h.update(0.4)).status_code == 202
    governance.slash(early.address, 1, hashlib.sha256(b"evidence").digest())
    for i, account in enumerate(h.insts):
        assert gasless_upload(account, h.update(0.01 * (i + 1))).status_code == 202
    deadline = h.ledger.round(h.bounty_id, 1).commit_deadline
    context.clock = lambda: deadline - 9  # inside the batch margin (the two slashed never upload a usable update)
    assert coordinator.step() == "waiting"
    commitments = h.ledger.commitments(h.bounty_id, 1)
    assert set(commitments) == {a.address for a in h.insts}
    assert len({c.tx_hash for c in commitments.values()}) == 1  # one batch, no retries one by one


def test_gasless_commitments_are_posted_in_the_margin_while_the_chain_mines_no_block(harness):
    """An idle invitee keeps the round open to the end of its window, and an idle development chain mines no
    block, so its time stands still: the batch goes out by this machine's clock, before the window closes."""
    h = harness
    context = h.context(wall_clock=True, commit_batch_margin=10)
    client = h.client(context)
    coordinator = Coordinator(context)
    assert coordinator.step() == "opened"
    deadline = h.ledger.round(h.bounty_id, 1).commit_deadline
    account, data = h.insts[0], h.update(0.01)
    headers = {"Content-Type": "application/octet-stream", "X-Update-Sha256": hashlib.sha256(data).hexdigest(),
               "X-Signature": h.sign(account, 1, data), **_gasless_headers(h, account, 1, data, 20)}
    assert client.post(f"/bounties/{h.bounty_id}/rounds/1/updates", content=data, headers=headers).status_code == 202
    context.clock = lambda: deadline - 11
    assert coordinator.step() == "waiting"
    assert h.ledger.commitment_of(h.bounty_id, 1, account.address) == bytes(32)
    context.clock = lambda: deadline - 9  # inside the margin by the wall clock; the chain's last block is older
    assert h.w3.eth.get_block("latest")["timestamp"] < deadline - 10
    assert coordinator.step() == "waiting"
    assert h.ledger.commitment_of(h.bounty_id, 1, account.address) != bytes(32)

def test_gasless_commitments_on_a_dp_bounty_carry_their_epsilon_into_the_batch(service_world, tmp_path):
    """The declared epsilon is signed with the commitment: the aggregator refuses a declaration over the bounty's
    budget at upload (the contract would revert the batch) and one not matching the signature; the batch records
    each institution's epsilon on chain."""
    from ledger.client import epsilon_units

    budget = epsilon_units(1.0)
    h = service_world.harness(tmp_path, epsilon_budget=budget)
    context = h.context()
    client = h.client(context)
    coordinator = Coordinator(context)
    assert coordinator.step() == "opened"
    url = f"/bounties/{h.bounty_id}/rounds/1/updates"
    declared = {}
    for i, account in enumerate(h.insts):
        data = h.update(0.01 * (i + 1))
        base = {"Content-Type": "application/octet-stream", "X-Update-Sha256": hashlib.sha256(data).hexdigest(),
                "X-Signature": h.sign(account, 1, data)}
        over = {**base, **_gasless_headers(h, account, 1, data, 20, budget + 1)}
        answer = client.post(url, content=data, headers=over)
        assert (answer.status_code, answer.json()["code"]) == (403, RejectionCode.NOT_ELIGIBLE)
        assert "over the bounty's privacy budget" in answer.json()["detail"]
        headers = {**base, **_gasless_headers(h, account, 1, data, 20, epsilon_units(0.5) + i)}
        understated = {**headers, "X-Declared-Epsilon": "0"}  # not what was signed
        assert client.post(url, content=data, headers=understated).json()["code"] == RejectionCode.BAD_SIGNATURE
        assert client.post(url, content=data, headers={**headers, "X-Declared-Epsilon": "-1"}).json()["code"] == (
            RejectionCode.MALFORMED)
        assert client.post(url, content=data, headers=headers).status_code == 202
        declared[account.address] = epsilon_units(0.5) + i
    assert coordinator.run_until("finalized") == "finalized"
    commitments = h.ledger.commitments(h.bounty_id, 1)
    assert {a: c.epsilon for a, c in commitments.items()} == declared
    assert len({c.tx_hash for c in commitments.values()}) == 1  # one batch
    assert set(scored_on_chain(h, 1)) == {a.address for a in h.insts}
