"""Seconds per round spent on chain and network, against the same rounds without them: ``python -m bench.round``.

At n = 10 institutions on Fed-Heart-Disease (the demo's data, task, rules and initial model; institution i trains on
hospital i mod 4's rows with its own key and seed), the same rounds run

* **plain**: :func:`fedledger.simulation.run_simulation`, every institution trains, then the one round computation
  (aggregate and score), in one process: no chain, no network, no hashing, no signatures;
* **through the protocol**, on each chain engine (``embedded``: eth-tester in process, the aggregator spoken to
  over in-process HTTP (ASGI), as ``fedledger demo``; ``anvil`` and ``ganache``: a node process and the aggregator's
  real HTTP server): the real aggregator coordinator and ten real node runners open, train, commit, upload, verify,
  score and finalize, driven as the demo drives them.

Per protocol round, the wall clock minus the time spent training (the nodes' trainer) and computing the round (the
coordinator's ``compute_round``) is ``round_overhead_seconds``: everything the chain and the network add. Rounds are
timed in steady state: the first round of each run (imports, first-use caches) is left out; figures are medians.
Everything is measured in the same run, so the ratios hold on a loaded machine even when seconds do not.

Merges ``round_overhead_seconds``, ``round_seconds_plain``, ``round_seconds`` and ``round_timing`` into
``bench/results/gas.json`` (``--out`` for another file); bench/README.md documents the keys.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.gas import RESULTS

N_INSTITUTIONS = 10
ROUNDS = 6  # the first is a warm-up
ENGINES = ("embedded", "anvil", "ganache")
SEED = 42
SCORER = "gtg"  # the demo's


class _Clock:
    """Wall-clock and CPU seconds spent inside the wrapped callables since the last ``lap``."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += time.process_time() - cpu

        return timed

    def lap(self) -> tuple[float, float]:
        spent, self.wall, self.cpu = (self.wall, self.cpu), 0.0, 0.0
        return spent


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by this process, plus by process ``pid`` (a chain node) if given."""
    total = time.process_time()
    if pid is not None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):  # not Linux: the node's share is not counted
            pass
    return total


def _setup(work: Path, n: int, scorer: str):
    """The demo's Heart data, task and rules; ``n`` institutions (key, rows) cycling over the four hospitals."""
    from aggregator.rules import resolve_rules
    from fedledger.demo import demo_account, prepare_heart
    from node.site import load_site

    data = prepare_heart(work / "data", seed=SEED, strategy="fedavg", task_path=work / "task.json")
    rules = resolve_rules(spec=data.spec, strategy="fedavg", strategy_params=data.strategy_params, estimator=scorer,
                          seed=SEED)
    rules.save(work / "rules.json")
    sites = [load_site(s.train_path, data.spec, name=s.name) for s in data.sites]
    members = []
    for i in range(n):
        site = sites[i % len(sites)]
        members.append((f"{site.name}-{i}", demo_account(f"bench-round/{i}"), site.X, site.y))
    return data, rules, members


def plain_rounds(data, rules, members, rounds: int) -> list[dict[str, float]]:
    """Wall-clock and CPU seconds of each round of the same federation without chain or network."""
    from fedcore.population import load_validation_set
    from fedledger.simulation import Institution, run_simulation

    validation = load_validation_set(data.validation_path, data.spec)
    marks = [(time.perf_counter(), time.process_time())]
    # Named by address, as the nodes are: the same training seeds, hence the same models as the protocol's rounds.
    institutions = [Institution(account.address, X, y) for _, account, X, y in members]
    run_simulation(institutions, data.spec, rules, rounds=rounds, seed=SEED, validation=(validation.X, validation.y),
                   validation_groups=validation.groups,
                   on_round=lambda _: marks.append((time.perf_counter(), time.process_time())), keep_records=False,
                   evaluate_every_round=False)
    return [{"wall": b[0] - a[0], "cpu": b[1] - a[1]} for a, b in zip(marks, marks[1:])]


def protocol_rounds(engine: str, data, rules, members, rounds: int, work: Path, *,
                    gasless: bool = False) -> list[dict[str, float]]:
    """Each round through the protocol on ``engine``: wall, training and round-computation seconds (``gasless``:
    the institutions sign their commitments and the aggregator posts them in one transaction)."""
    from aggregator.rounds import compute_round
    from aggregator.service.app import create_app
    from aggregator.service.coordinator import Coordinator
    from fedcore.protocol import CoordinatorPhase as Phase
    from fedcore.rules import rules_hash
    from fedcore.task import task_hash
    from fedledger.demo import (
        COMMIT_WINDOW,
        GAS_ALLOWANCE,
        IN_PROCESS_URL,
        MIN_STAKE,
        Participant,
        _drive,
        _serve_http,
        demo_account,
        in_process_transport,
        local_aggregator_context,
    )
    from fedledger.sponsor import file_sha256
    from ledger.chain import advance_time, connect, fund_account, latest_timestamp
    from ledger.client import BountyParams, FedLedgerClient
    from ledger.deployment import deploy_fedledger
    from ledger.devchain import start_chain
    from node.remote import AggregatorClient
    from node.runner import NodeRunner
    from node.training import train_local

    state = work / (engine + ("-gasless" if gasless else ""))
    training, scoring = _Clock(), _Clock()
    with ExitStack() as stack:
        node = None if engine == "embedded" else stack.enter_context(start_chain(engine))
        w3 = connect(node.url if node else "embedded")
        pid = node.process.pid if node else None
        sponsor, aggregator = demo_account("bench-round/sponsor"), demo_account("bench-round/aggregator")
        reward = 10**18
        fund_account(w3, sponsor.address, reward + GAS_ALLOWANCE)
        fund_account(w3, aggregator.address, GAS_ALLOWANCE)
        for _, account, _, _ in members:
            fund_account(w3, account.address, MIN_STAKE + GAS_ALLOWANCE)
        deployment = deploy_fedledger(w3, w3.eth.accounts[0], min_stake=MIN_STAKE, leave_cooldown=86_400)
        deployment_path = deployment.save(state / "deployment.json")
        ledger = FedLedgerClient.from_deployment(w3, deployment)
        params = BountyParams(
            task_spec_hash=task_hash(data.spec), validation_set_hash=file_sha256(data.validation_path),
            aggregator=aggregator.address, num_rounds=rounds, commit_window=COMMIT_WINDOW,
            deadline=latest_timestamp(w3) + 30 * 86_400, rules_hash=rules_hash(rules),
        )
        bounty_id = ledger.as_sender(sponsor).create_bounty(params, reward)
        for name, account, _, _ in members:
            ledger.as_sender(account).join(name, "", stake=MIN_STAKE)

        context = local_aggregator_context(w3, aggregator, bounty_id=bounty_id, data=data,
                                           deployment_path=deployment_path, state_dir=state,
                                           rules_path=work / "rules.json", seed=SEED)
        stack.callback(context.close)
        app = create_app(context=context, run_coordinator=False)
        coordinator = Coordinator(context, compute=scoring.wrap(compute_round))
        if engine == "embedded":
            from anyio.from_thread import start_blocking_portal

            portal = stack.enter_context(start_blocking_portal())
            base_url, transport = IN_PROCESS_URL, in_process_transport(app, portal)
        else:
            base_url, transport = _serve_http(app, stack), None
        participants = []
        for name, account, X, y in members:
            client = AggregatorClient(base_url, transport=transport, retries=0 if transport else 3)
            stack.callback(client.close)
            p = Participant(name, "honest", account, X, y, None)
            p.runner = NodeRunner(ledger=ledger, aggregator=client, account=account, bounty_id=bounty_id, X=X, y=y,
                                  state_dir=state / "nodes" / name, spec=data.spec, progress=False,
                                  echo=lambda line: None, trainer=training.wrap(train_local), gasless=gasless)
            stack.callback(p.runner.close)
            participants.append(p)

        timings: list[dict[str, float]] = []
        started = [(time.perf_counter(), _cpu_seconds(pid))]
        training.lap(), scoring.lap()

        def finalized(number: int) -> None:
            now = (time.perf_counter(), _cpu_seconds(pid))
            (train_wall, train_cpu), (score_wall, score_cpu) = training.lap(), scoring.lap()
            timings.append({"wall": now[0] - started[0][0], "training": train_wall, "scoring": score_wall,
                            "cpu": now[1] - started[0][1], "training_cpu": train_cpu, "scoring_cpu": score_cpu})
            started[0] = now

        outcome = _drive(coordinator, participants, w3, context, finalized, lambda line: None, advance_time,
                         {p for p in Phase if p.terminal}, limit=rounds * 40)
        failures = {p.name: p.failure for p in participants if p.failure}
        if outcome != Phase.COMPLETED or failures or len(timings) != rounds:
            raise RuntimeError(f"{engine}: the bounty ended {outcome} after {len(timings)} rounds; failures {failures}")
        return timings


FLOWER_PYTHON = Path(__file__).resolve().parents[1] / ".venv-flower" / "bin" / "python"  # make bench-round builds it


def flower_rounds(data, rules, members, rounds: int, work: Path, python: Path) -> dict[str, Any]:
    """Wall-clock seconds of each round of the same federation in Flower's simulation engine (:mod:`bench.flower_round`,
    run by ``python``, the interpreter of Flower's own virtualenv), or why it could not be measured."""
    import numpy as np

    if not python.exists():
        return {"error": f"{python} does not exist: `make bench-round` installs Flower there"}
    flower = work / "flower"
    flower.mkdir()
    for i, (_, _, X, y) in enumerate(members):
        np.savez(flower / f"client-{i}.npz", X=X, y=y)
    (flower / "flower.json").write_text(json.dumps({
        "task": str(data.task_path), "seed": SEED, "rounds": rounds, "config": rules.fit_config(),
        "clients": [account.address for _, account, _, _ in members]}))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "RAY_DEDUP_LOGS": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([str(python), "-m", "bench.flower_round", str(flower)], capture_output=True, text=True,
                          env=env, cwd=root, timeout=900)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"the Flower run failed (exit {done.returncode}): {tail[0]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(values) -> float:
    return round(float(statistics.median(values)), 4)


def _summary(protocol: dict[str, list[dict[str, float]]], plain: tuple[float, float],
             flower: float | None) -> dict[str, Any]:
    """Medians of each engine's protocol rounds, and their ratios to the plain (wall, CPU) and the Flower round."""
    def median(key) -> dict[str, float]:
        return {e: _median([key(t) for t in ts]) for e, ts in protocol.items()}

    wall, cpu = median(lambda t: t["wall"]), median(lambda t: t["cpu"])
    return {
        "round_seconds": wall,
        "round_overhead_seconds": median(lambda t: t["wall"] - t["training"] - t["scoring"]),
        "ratio_to_plain": {e: round(s / plain[0], 2) for e, s in wall.items()},
        "ratio_to_flower": None if flower is None else {e: round(s / flower, 2) for e, s in wall.items()},
        "training_seconds": median(lambda t: t["training"]),
        "scoring_seconds": median(lambda t: t["scoring"]),
        "protocol_per_round": {e: [round(t["wall"], 4) for t in ts] for e, ts in protocol.items()},
        "cpu": {"round_seconds": cpu,
                "round_overhead_seconds": median(lambda t: t["cpu"] - t["training_cpu"] - t["scoring_cpu"]),
                "ratio_to_plain": {e: round(s / plain[1], 2) for e, s in cpu.items()}},
    }


def measure(*, engines=ENGINES, n: int = N_INSTITUTIONS, rounds: int = ROUNDS, scorer: str = SCORER,
            flower_python: Path | None = FLOWER_PYTHON, gasless: bool = True,
            earlier_flower: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every figure of one run; ``earlier_flower`` (a previous report's ``round_timing.flower``) stands in, marked as
    such, when Flower is not run this time, so a run without Flower's virtualenv does not erase its figure."""
    import torch

    with tempfile.TemporaryDirectory(prefix="fedledger-bench-round-") as tmp:
        work = Path(tmp)
        data, rules, members = _setup(work, n, scorer)
        plain = plain_rounds(data, rules, members, rounds)[1:]
        flower = (flower_rounds(data, rules, members, rounds, work, flower_python) if flower_python
                  else {"error": "not asked for (--flower-python none)"})
        protocol = {engine: protocol_rounds(engine, data, rules, members, rounds, work)[1:] for engine in engines}
        batched = {engine: protocol_rounds(engine, data, rules, members, rounds, work, gasless=True)[1:]
                   for engine in (engines if gasless else ())}
        plain_again = plain_rounds(data, rules, members, rounds)[1:]  # before and after: the load may change
    plain_seconds = _median([t["wall"] for t in plain + plain_again])
    plain_cpu = _median([t["cpu"] for t in plain + plain_again])
    flower_seconds = _median(flower["round_seconds"][1:]) if "round_seconds" in flower else None
    flower_timing = {"error": flower["error"]} if flower_seconds is None else {
        "per_round": [round(t, 4) for t in flower["round_seconds"][1:]], "flwr": flower["flwr"],
        "backend": flower["backend"],
        "note": "wall clock only (Ray's worker processes are not counted in CPU); Flower's in-memory grid polls "
                "for replies every 0.1 s, so its round cannot be shorter",
    }
    if flower_seconds is None and earlier_flower and earlier_flower.get("per_round"):
        flower_seconds = _median(earlier_flower["per_round"])
        flower_timing = {**earlier_flower, "earlier_run": f"not run this time ({flower['error']}): the figure of "
                         "an earlier run of this benchmark, under that run's load"}
    own = _summary(protocol, (plain_seconds, plain_cpu), flower_seconds)
    cpu = own.pop("cpu")
    return {
        "round_seconds_flower": flower_seconds,
        "round_overhead_seconds": own.pop("round_overhead_seconds"),
        "round_seconds_plain": plain_seconds,
        "round_seconds": own.pop("round_seconds"),
        "round_timing": {
            "institutions": n, "rounds_timed": rounds - 1, "scorer": scorer, "strategy": "fedavg",
            "torch_threads": torch.get_num_threads(),
            "statistic": "median over rounds 2..R (round 1 is a warm-up)",
            **own,
            "plain_per_round": [round(t["wall"], 4) for t in plain + plain_again],
            "cpu": {
                "note": "CPU seconds (this process, plus the chain node's process): unlike wall-clock seconds, "
                        "not inflated by other work on the machine",
                "round_seconds_plain": plain_cpu, **cpu,
            },
            "gasless": _summary(batched, (plain_seconds, plain_cpu), flower_seconds) if batched else None,
            "flower": flower_timing,
            "command": f"python -m bench.round --rounds {rounds} --institutions {n} --scorer {scorer}",
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.round", description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--institutions", type=int, default=N_INSTITUTIONS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per run; the first is a warm-up")
    parser.add_argument("--scorer", default=SCORER)
    parser.add_argument("--flower-python", default=str(FLOWER_PYTHON),
                        help="the Python of Flower's virtualenv (`make bench-round` builds it); 'none' to skip Flower")
    parser.add_argument("--no-gasless", action="store_true", help="skip the rounds with batched signed commitments")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON file the keys are merged into")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as every fedledger command (fedledger.cli.main)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the first is a warm-up)")
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    found = measure(engines=args.engines, n=args.institutions, rounds=args.rounds, scorer=args.scorer,
                    flower_python=None if args.flower_python == "none" else Path(args.flower_python),
                    gasless=not args.no_gasless, earlier_flower=report.get("round_timing", {}).get("flower"))
    report.update(found)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    timing = found["round_timing"]
    cpu = timing["cpu"]
    print(f"plain round: {found['round_seconds_plain']:.3f} s, CPU {cpu['round_seconds_plain']:.3f} s "
          f"({args.institutions} institutions, median)")
    flower = timing["flower"]
    if found["round_seconds_flower"] is None:
        print(f"Flower round: not measured: {flower['error']}")
    else:
        print(f"Flower round: {found['round_seconds_flower']:.3f} s (flwr {flower['flwr']}, {flower['backend']})"
              f"{'; ' + flower['earlier_run'] if 'earlier_run' in flower else ''}")
    modes = [("", {**timing, **found, "cpu": cpu})]
    if timing["gasless"]:
        modes.append((" gasless", timing["gasless"]))
    for mode, figures in modes:
        for engine, seconds in figures["round_seconds"].items():
            versus = figures["ratio_to_flower"]
            print(f"{engine + mode:<17} round {seconds:.3f} s = {figures['ratio_to_plain'][engine]:.2f}x plain"
                  f"{'' if versus is None else f', {versus[engine]:.2f}x Flower'}; on chain and network "
                  f"{figures['round_overhead_seconds'][engine]:.3f} s; CPU {figures['cpu']['round_seconds'][engine]:.3f}"
                  f" s = {figures['cpu']['ratio_to_plain'][engine]:.2f}x plain, on chain and network "
                  f"{figures['cpu']['round_overhead_seconds'][engine]:.3f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
