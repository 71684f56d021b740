"""``fedledger demo``: a whole federation in one process, on real data, from the bounty to the audit.

The story
---------
1. **Data.** The four Fed-Heart-Disease hospitals (:func:`fedledger.datasets.write_heart`: FLamby's cleaning
   and per-hospital split; each hospital's training rows minus a carved validation slice, its test rows, the
   sponsor's validation set with its ``site`` column, the task with the sponsor's scaler), or the user's own per-site
   CSV files (``--sites A.csv B.csv ... --label y``) with the sponsor's ``--validation`` and ``--test`` files (or
   ``--carve`` to carve both from the site files, seeded by ``--seed``). Every input is read through the node's own
   reader (:mod:`fedcore.tables`) before anything is written: a bad file is one line and exit 2, ``--out`` untouched.
   Every party scales features with the task's scaler (fitted on the sponsor's validation rows), and the utility
   weights the validation groups as the task declares (``--weighting``; default chosen by ``bench.weighting``).
2. **Chain.** A fresh FedLedger is deployed on the embedded chain (eth-tester, in this process), on a Ganache
   or an Anvil started for the run (``--chain ganache``, ``--chain anvil``), or on any JSON-RPC dev chain that holds
   an unlocked account (``--chain http://...``).
3. **Sponsor.** Creates a bounty for the task with ``--reward`` escrowed (:mod:`ledger.client`, hashes as
   :mod:`fedledger.sponsor` computes them).
4. **Hospitals.** Each joins the registry with the minimum stake, then takes part through the real node code
   (:class:`node.runner.NodeRunner` over :class:`node.remote.AggregatorClient`): download the global model,
   check its hash against the chain, train locally, commit ``sha256(update)`` on chain, upload the signed bytes.
5. **Aggregator.** The real service (:func:`aggregator.service.app.create_app` and its
   :class:`~aggregator.service.coordinator.Coordinator`): opens each round on chain, verifies every upload
   against its commitment, aggregates with ``--strategy``, scores every update with ``--scorer`` on the
   validation set, and finalizes (new model hash, scores; the contract updates reputations and credits rewards).
6. **Payouts.** Every hospital claims what it was credited; the sponsor takes back what no round could credit
   (rounding dust included).
7. **Audit.** :func:`fedledger.audit_verify.verify_bounty` replays the bounty from chain events, downloads every
   stored update and model from the aggregator's HTTP API, and recomputes aggregates and scores bit for bit.

How it runs in one process
--------------------------
eth-tester is not thread-safe, so nothing runs concurrently: one thread alternates
``Coordinator.step()`` with each hospital's ``NodeRunner.poll_once()``. The nodes still speak HTTP to the
aggregator's FastAPI app: on the embedded chain through an in-process ASGI transport (the request and response
bytes go through the real app, without a socket); on Ganache, Anvil or a URL through uvicorn on a local port. The
interleaving is deterministic, so equal arguments give the same models, scores and payouts.

Bad participants
----------------
``--free-rider NAME`` makes that hospital return a zero update every round (the global model unchanged) while
claiming its full sample count; ``--attacker NAME`` makes it train on flipped labels. The table and
``report.json`` then show what the contribution scores, reputations and payouts make of them: the bounty's
contribution gate (:mod:`aggregator.gate`) keeps an update whose value is negative beyond its spread out of the
model (each round's ``left_out``), its score goes on chain capped at 0, and it is credited nothing.

Outputs (in ``--out``, default ``runs/demo/``)
----------------------------------------------
``report.json`` (see :func:`run_demo`), ``accuracy.png``, ``contributions.png``, ``payouts.png``, the prepared
data in ``data/`` and everything the parties kept in ``state/`` (aggregator database and blobs, node states,
deployment file, event index). The folder's previous ``data/`` and ``state/`` are replaced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.errors import ConfigError, FedLedgerError
from fedcore.protocol import CoordinatorPhase as Phase
from fedledger.demo_report import round_story
from fedsets.heart import DEMO_MODEL, HEART_MODEL, HEART_MODELS, HEART_STEP_SEARCH

DEFAULT_OUT = Path("runs/demo")
DEFAULT_ROUNDS = 15  # FLamby's Fed-Heart-Disease budget (fedsets.heart.ROUNDS)
DEFAULT_SEED = 42
DEFAULT_REWARD = 10 * 10**18
MIN_STAKE = 10**17  # 0.1 ETH
GAS_ALLOWANCE = 10**18  # ether each actor gets for gas
COMMIT_WINDOW = 600  # seconds of chain time per round; closed early once every hospital uploaded
DEADLINE_DAYS = 30
VALIDATION_FRACTION = 0.25  # share of each site's training rows carved for the sponsor's validation set
SITE_TRAIN_FRACTION = 0.66  # --sites: train/test split of each file (FLamby's heart split)
MIN_SITE_ROWS = 12
MARKER = ".fedledger-demo"
HONEST, FREE_RIDER, ATTACKER = "honest", "free-rider", "attacker"
KEYSTORE_SCRYPT_N = 2**14  # the aggregator's demo keystore: a throwaway key, cheap to unlock


def local_aggregator_context(w3: Any, aggregator: Any, *, bounty_id: int, data: Any, deployment_path: Path,
                             state_dir: Path, rules_path: Path, seed: int) -> Any:
    """The aggregator service's context for a run in this process (the demo's, the round benchmark's): a throwaway
    keystore for ``aggregator`` under ``state_dir``, no upload grace, fast polling."""
    from aggregator.service.context import build_context
    from aggregator.service.settings import load_settings
    from fedcore.keystore import create_keystore

    password = hashlib.sha256(aggregator.key + b"/demo-keystore").hexdigest()
    keystore_path = state_dir / "aggregator.keystore.json"
    create_keystore(keystore_path, password, private_key=aggregator.key, scrypt_n=KEYSTORE_SCRYPT_N)
    settings = load_settings({
        "bounty_id": bounty_id, "task_path": data.task_path, "validation_path": data.validation_path,
        "keystore_path": keystore_path, "password": password, "deployment": deployment_path,
        "state_dir": state_dir / "aggregator", "rules_path": rules_path, "seed": seed,
        "upload_grace": 0, "poll_interval": 0.05,
    }, environ={})
    return build_context(settings, w3=w3)
IN_PROCESS_URL = "http://aggregator.demo"


class DemoError(FedLedgerError):
    """The demo could not run its story (one line for the CLI)."""


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class DemoOptions:
    """What ``fedledger demo`` runs (the CLI's options).

    Attributes
    ----------
    rounds : int
    strategy, scorer : str
        Aggregation strategy (:func:`aggregator.strategies.make_strategy`) and contribution estimator
        (:func:`aggregator.shapley.make_estimator`).
    seed : int
        Root of the data carving, the initial model, local training and scoring.
    chain : str
        ``embedded``, ``ganache``, ``anvil`` (a dev chain started for the run) or a JSON-RPC URL.
    sites : tuple of paths, optional
        The user's per-site CSV files (instead of Fed-Heart-Disease); ``label`` names their label column.
    validation, test : Path, optional
        With ``sites``: the sponsor's validation set (its columns other than ``label`` and ``group`` are the task's
        features; its hash goes on chain) and test set (every institution's results are reported on it).
    carve : bool
        With ``sites``, instead of ``validation`` and ``test``: carve both from the site files.
    group : str, optional
        The sponsor's validation column naming each row's group (carved validation rows are grouped by site).
    weighting : str, optional
        ``pooled`` or ``equal`` (per group); default: ``fedsets.heart.HEART_WEIGHTING`` when the validation set has
        groups, else pooled.
    free_rider, attacker : str, optional
        Institution names that send zero updates / train on flipped labels.
    model : str
        The task's model (:func:`fedsets.heart.heart_task_spec`): ``mlp`` (default, ``fedsets.heart.DEMO_MODEL``: the
        benchmark's ``ditto_mlp``) or ``logreg`` (FLamby's logistic regression).
    reward : int
        Wei escrowed by the sponsor.
    out : Path
    progress : bool or None
        tqdm bars (None: only on a terminal).
    """

    rounds: int = DEFAULT_ROUNDS
    strategy: str = "fedavg"
    scorer: str = "gtg"
    seed: int = DEFAULT_SEED
    chain: str = "embedded"
    sites: tuple[Path, ...] = ()
    label: str | None = None
    validation: Path | None = None
    test: Path | None = None
    carve: bool = False
    group: str | None = None
    weighting: str | None = None
    free_rider: str | None = None
    attacker: str | None = None
    model: str = DEMO_MODEL
    reward: int = DEFAULT_REWARD
    out: Path = DEFAULT_OUT
    progress: bool | None = None

    def check(self) -> None:
        from ledger.devchain import ENGINES

        if self.rounds < 1:
            raise ConfigError(f"--rounds must be at least 1, got {self.rounds}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        if self.reward < 1:
            raise ConfigError("--reward must be positive")
        if self.sites and not self.label:
            raise ConfigError("--sites needs --label COLUMN (the 0/1 label column of the files)")
        if self.label and not self.sites:
            raise ConfigError("--label goes with --sites FILE...")
        if self.sites and len(self.sites) < 2:
            raise ConfigError("--sites needs at least two files: a federation of one is local training")
        sponsor_files = self.validation is not None or self.test is not None
        if not self.sites and (sponsor_files or self.carve or self.group):
            raise ConfigError("--validation, --test, --carve and --group go with --sites FILE...")
        if self.sites and self.carve and (sponsor_files or self.group):
            raise ConfigError("--carve carves validation and test rows from the site files (grouped by site): "
                              "leave out --validation, --test and --group")
        if self.sites and not self.carve and (self.validation is None or self.test is None):
            raise ConfigError("--sites needs the sponsor's --validation FILE and --test FILE, or --carve to carve "
                              "them from the site files")
        if self.weighting not in (None, "pooled", "equal"):
            raise ConfigError(f"--weighting must be pooled or equal, got {self.weighting!r}")
        if self.weighting == "equal" and self.sites and not self.carve and not self.group:
            raise ConfigError("--weighting equal needs --group COLUMN of the validation set")
        if self.chain not in ("embedded", *ENGINES) and not self.chain.startswith(("http://", "https://")):
            raise ConfigError(f"--chain {self.chain!r}: use embedded, ganache, anvil or an http(s):// JSON-RPC URL")
        if self.model not in HEART_MODELS:
            raise ConfigError(f"--model must be one of {', '.join(HEART_MODELS)}, got {self.model!r}")
        if self.free_rider and self.free_rider == self.attacker:
            raise ConfigError("--free-rider and --attacker name the same institution")


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class DemoSite:
    """One institution's files: its training CSV (what its node reads) and its test CSV (results)."""

    name: str
    train_path: Path
    test_path: Path


@dataclass(frozen=True)
class DemoData:
    source: str  # "fed-heart-disease" or "sites"
    spec: Any  # TaskSpec of the bounty
    task_path: Path
    validation_path: Path
    sites: tuple[DemoSite, ...]
    strategy_params: dict[str, Any]


def _strategy_settings(strategy: str, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strategy kwargs, client training changes): FLamby's Fed-Heart-Disease settings for the strategy
    (``fedsets.heart.FLAMBY_SETTINGS``), FedAvg's for any other. FLamby's client learning rates are the logistic
    regression's: any other model keeps the task's own training settings."""
    from aggregator.strategies import make_strategy
    from fedsets.heart import FLAMBY_SETTINGS

    key = make_strategy(strategy).name  # one line for an unknown strategy
    kwargs, client = FLAMBY_SETTINGS.get(key, ({}, FLAMBY_SETTINGS["fedavg"][1]))
    return dict(kwargs), dict(client) if model == "logreg" else {}


def _bounty_spec(spec, strategy: str, seed: int, task_path: Path):
    """The bounty's task, saved: ``spec`` with the strategy's client settings, the demo's seed and each hospital's
    personalization (``fedsets.heart.PERSONAL_METHOD``: Ditto or its own tuned local-only model, whichever wins on
    its validation, as the benchmark's ``ditto_mlp_or_local``)."""
    from dataclasses import replace

    from fedcore.task import PersonalizationSettings
    from fedsets.heart import PERSONAL_LOCAL_CANDIDATE, PERSONAL_METHOD

    kwargs, client = _strategy_settings(strategy, spec.model)
    # two validation carvings instead of five: each hospital's choices take a few times less
    spec = replace(spec, personalization=PersonalizationSettings(method=PERSONAL_METHOD, validation_splits=2,
                                                                 local_candidate=PERSONAL_LOCAL_CANDIDATE))
    spec = spec.with_training(seed=int(seed), **client)
    task_path.parent.mkdir(parents=True, exist_ok=True)
    spec.save(task_path)
    return spec, kwargs


def prepare_heart(data_dir: Path, *, seed: int, strategy: str, task_path: Path, weighting: str | None = None,
                  model: str = HEART_MODEL) -> DemoData:
    """Fed-Heart-Disease as four hospitals' CSVs.

    Written by :func:`fedledger.datasets.write_heart`, carving seeded by ``seed``; ``weighting`` replaces the task's
    weighting of the validation set's hospitals (default: ``fedsets.heart.HEART_WEIGHTING``).
    """
    from dataclasses import replace

    from fedcore.task import TaskSpec
    from fedledger.datasets import TASK_FILE, VALIDATION_FILE, write_heart

    manifest = write_heart(data_dir, validation_fraction=VALIDATION_FRACTION, seed=seed, model=model)
    spec = TaskSpec.load(data_dir / TASK_FILE)
    if weighting is not None:
        spec = replace(spec, population=replace(spec.population, weighting=weighting))
    spec, kwargs = _bounty_spec(spec, strategy, seed, task_path)
    sites = tuple(DemoSite(name, data_dir / info["file"], data_dir / info["test_file"])
                  for name, info in manifest["sites"].items())
    return DemoData("fed-heart-disease", spec, task_path, data_dir / VALIDATION_FILE, sites, kwargs)


def _site_names(files: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for path in files:
        base, name, i = path.stem or "site", path.stem or "site", 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


GROUP_COLUMN = "site"  # --carve: the carved validation rows name their site here


@dataclass(frozen=True)
class SiteInputs:
    """The ``--sites`` inputs, read and checked before anything is written.

    Attributes
    ----------
    spec : TaskSpec
        The task before the bounty's settings (:func:`_bounty_spec`): the features, the sponsor's scaler fitted on
        the validation rows (:func:`fedcore.population.scaler_from_rows`) and the validation groups' weighting.
    train, test : tuple of Table
        Per institution, raw rows: what its node trains on, what its results are reported on.
    validation : Table
        The sponsor's validation rows, raw.
    groups : tuple of str or None
        Each validation row's group.
    validation_bytes : bytes or None
        The sponsor's validation file as given (its hash goes on chain); None when carved.
    """

    spec: Any
    train: tuple[Any, ...]
    test: tuple[Any, ...]
    validation: Any
    groups: tuple[str, ...] | None
    validation_bytes: bytes | None


def read_sites(options: DemoOptions) -> SiteInputs:
    """Read every ``--sites`` input through the node's own reader (:func:`fedcore.tables.read_task_table`).

    The task's features are the sponsor's validation columns other than the label and the group column (with
    ``--carve``: the first site file's columns other than the label). Every site, validation and test file must
    hold all of them as finite numbers with 0/1 labels: a missing column, an empty or NaN cell or a value that is
    not a number is one :class:`~fedcore.errors.DataError` naming the file, the line and the column. With
    ``--carve`` each file is split into train and test (``SITE_TRAIN_FRACTION``, stratified as FLamby does, seeded
    by ``--seed``) and a validation slice is carved from the training rows, grouped by site.
    """
    from fedcore.population import group_weights, scaler_from_rows
    from fedcore.splits import flamby_stratify, train_test_split_indices
    from fedcore.tables import read_header, read_task_table
    from fedcore.task import TargetPopulation, TaskSpec
    from fedsets.data import Table, concat_tables
    from fedsets.heart import HEART_WEIGHTING, heart_task_spec

    label = str(options.label)
    files = [Path(f) for f in options.sites]
    names = _site_names(files)

    def read(path: Path, name: str, extra: tuple[str, ...] = ()):
        table = read_task_table(path, features, label, dtype=np.float64, extra_columns=extra)  # raw, exact values
        return Table(name, features, table.features, table.labels), table

    group = GROUP_COLUMN if options.carve else options.group
    header = read_header(files[0] if options.carve else Path(str(options.validation)))
    if options.carve and GROUP_COLUMN in header:
        raise ConfigError(f"{files[0]} has a column {GROUP_COLUMN!r}, the name --carve gives the validation groups: "
                          "rename it, or pass the sponsor's --validation and --test")
    features = tuple(c for c in header if c and c not in (label, group))
    if not features:
        raise ConfigError(f"{files[0] if options.carve else options.validation} has no feature column besides "
                          f"{label!r}")
    validation_bytes = None
    if not options.carve:  # the sponsor's files first: they define the task
        validation, read_validation = read(Path(str(options.validation)), "validation", (group,) if group else ())
        groups = read_validation.extra[group] if group else None
        validation_bytes = Path(str(options.validation)).read_bytes()
        test_table = read(Path(str(options.test)), "test")[0]
    sites = [read(path, name)[0] for path, name in zip(files, names)]
    for path, table in zip(files, sites):
        if len(table) < MIN_SITE_ROWS:
            raise ConfigError(f"site file {path} has {len(table)} rows: the demo needs at least {MIN_SITE_ROWS}")
    if options.carve:
        train, test, carved = [], [], []
        for table in sites:
            fit, held = train_test_split_indices(len(table), train_fraction=SITE_TRAIN_FRACTION, seed=options.seed,
                                                 stratify=flamby_stratify(table.y))
            inner, slice_ = train_test_split_indices(len(fit), train_fraction=1.0 - VALIDATION_FRACTION,
                                                     seed=options.seed, stratify=flamby_stratify(table.y[fit]))
            train.append(table.take(fit[inner]))
            test.append(table.take(held))
            carved.append(table.take(fit[slice_]))
        validation = concat_tables(carved, "validation")
        groups = tuple(t.name for t in carved for _ in range(len(t)))
    else:
        train, test = sites, [test_table.take(np.arange(len(test_table)), name) for name in names]
    weighting = options.weighting or (HEART_WEIGHTING if group else "pooled")
    population = TargetPopulation(weighting=weighting, group_column=group)
    group_weights(groups, population)  # an empty group value is one line, now
    base = heart_task_spec(features, model=options.model)
    spec = TaskSpec(name="demo-sites", model=base.model, model_params=base.model_params, feature_columns=features,
                    label_column=label,
                    metric=base.metric, training=base.training, scaling=scaler_from_rows(validation.X),
                    population=population)
    return SiteInputs(spec, tuple(train), tuple(test), validation, groups, validation_bytes)


def write_sites(inputs: SiteInputs, data_dir: Path, *, seed: int, strategy: str, task_path: Path) -> DemoData:
    """Write what :func:`read_sites` read into ``data_dir``: each institution's training and test CSV and the
    sponsor's validation set (its own bytes, or the carved rows with their site column); save the bounty's task."""
    from fedcore.files import write_atomic
    from fedcore.tables import write_task_table

    spec = inputs.spec
    features, label = spec.feature_columns, spec.label_column
    sites = []
    for train, test in zip(inputs.train, inputs.test):
        train_path, test_path = data_dir / f"{train.name}.csv", data_dir / "test" / f"{train.name}.csv"
        write_task_table(train_path, features, label, train.X, train.y)
        write_task_table(test_path, features, label, test.X, test.y)
        sites.append(DemoSite(train.name, train_path, test_path))
    validation_path = data_dir / "validation.csv"
    if inputs.validation_bytes is not None:
        write_atomic(validation_path, inputs.validation_bytes)
    else:
        write_task_table(validation_path, features, label, inputs.validation.X, inputs.validation.y,
                         extra={GROUP_COLUMN: list(inputs.groups or ())})
    spec, kwargs = _bounty_spec(spec, strategy, seed, task_path)
    return DemoData("sites", spec, task_path, validation_path, tuple(sites), kwargs)


@dataclass
class Participant:
    """One institution of the demo: its data, key and role."""

    name: str
    role: str
    account: Any  # LocalAccount
    X: np.ndarray  # standardized training rows (what its node trains on; labels flipped for an attacker)
    y: np.ndarray
    evaluation: Any  # simulation.Institution with the honest labels and the test part
    runner: Any = None
    failure: str | None = None

    @property
    def address(self) -> str:
        return self.account.address


def _load_participants(data: DemoData, accounts: dict[str, Any], roles: dict[str, str]) -> list[Participant]:
    from fedcore.tables import read_task_table
    from fedledger.simulation import Institution
    from node.site import load_site

    participants = []
    for site in data.sites:
        local = load_site(site.train_path, data.spec, name=site.name)
        test = read_task_table(site.test_path, data.spec.feature_columns, data.spec.label_column, dtype=np.float64)
        evaluation = Institution(site.name, local.X, local.y, local.scaling.transform(test.features), test.labels)
        role = roles.get(site.name, HONEST)
        y = (1.0 - local.y).astype(np.float32) if role == ATTACKER else local.y
        participants.append(Participant(site.name, role, accounts[site.name], local.X, y, evaluation))
    return participants


def zero_update(global_weights, X, y, spec, *, seed=None, config=None):
    """A free rider's "training": the global model sent back unchanged (a zero update), claiming every row."""
    from fedcore.types import Update

    update = {k: np.zeros_like(np.asarray(v, dtype=np.float32)) for k, v in global_weights.items()}
    return Update("free-rider", update, int(np.shape(y)[0]), {"steps": 0.0})


# ---------------------------------------------------------------------------------------------
# Plumbing: keys, the HTTP transport, the chain


def demo_account(role: str):
    """A fixed key per role (``sponsor``, ``aggregator``, ``institution/<name>``): the demo is reproducible."""
    from eth_account import Account

    return Account.from_key(hashlib.sha256(f"fedledger-demo/{role}".encode()).digest())


def in_process_transport(app, portal):
    """An httpx transport that hands each request to the ASGI ``app`` in this process (no socket).

    The request and response bytes go through the real app (routing, validation, dependencies, error
    handlers); the app runs on the anyio event loop of ``portal`` (a blocking portal's thread) while the caller
    waits, so nothing runs concurrently with the caller.
    """
    import httpx

    class InProcessTransport(httpx.BaseTransport):
        def __init__(self):
            self._asgi = httpx.ASGITransport(app=app)

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            async def send():
                response = await self._asgi.handle_async_request(request)
                body = await response.aread()
                return response.status_code, response.headers.multi_items(), body

            status, headers, body = portal.call(send)
            return httpx.Response(status, headers=headers, content=body, request=request)

    return InProcessTransport()


def _serve_http(app, stack: ExitStack) -> str:
    """uvicorn on a free local port in a thread; returns its URL (stopped when ``stack`` closes)."""
    import uvicorn

    from ledger.devchain import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="fedledger-demo-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise DemoError(f"the aggregator's HTTP server did not start on 127.0.0.1:{port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    stack.callback(stop)
    return f"http://127.0.0.1:{port}"


def _open_chain(kind: str, stack: ExitStack):
    """(w3, label) for ``embedded``, ``ganache`` or ``anvil`` (started now, stopped with ``stack``) or a URL."""
    from ledger.chain import connect
    from ledger.devchain import ENGINES, start_chain

    if kind == "embedded":
        return connect("embedded"), "embedded"
    if kind in ENGINES:
        chain = stack.enter_context(start_chain(kind))
        return connect(chain.url), f"{kind} {chain.url}"
    if kind.startswith(("http://", "https://")):
        return connect(kind), kind
    raise ConfigError(f"--chain {kind!r}: use embedded, ganache, anvil or an http(s):// JSON-RPC URL")


# ---------------------------------------------------------------------------------------------
# The run


def _ether(wei: int) -> str:
    return f"{wei / 10**18:.4f} ETH"


def _prepare_out(out: Path) -> Path:
    """Create ``out``; replace the ``data/`` and ``state/`` of an earlier demo; refuse a folder of other files."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ConfigError(f"--out {out} holds files the demo did not write: choose an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `fedledger demo`: its data/ and state/ are replaced on the next run\n")
    for sub in ("data", "state"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    return out


def _gas_by_kind(w3, ledger, first_block: int, actors: set[str]) -> dict[str, dict[str, int]]:
    """Gas used per transaction kind, from the receipts of every transaction our actors sent since ``first_block``.

    Kinds: the FedLedger function called (``join``, ``createBounty``, ``openRound``, ``commitUpdate``,
    ``finalizeRound``, ``claim``, ``refundRemainder``), ``deploy`` and ``transfer`` (funding the actors).
    """
    from web3 import Web3

    used: dict[str, list[int]] = {}
    for number in range(first_block, int(w3.eth.block_number) + 1):
        block = w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if Web3.to_checksum_address(tx["from"]) not in actors:
                continue
            receipt = w3.eth.get_transaction_receipt(tx["hash"])
            to = tx.get("to")
            if not to:
                kind = "deploy"
            elif Web3.to_checksum_address(to) == ledger.address:
                try:
                    kind = ledger.function_name(tx.get("input", tx.get("data")))
                except ValueError:
                    kind = "unknown"
            else:
                kind = "transfer"
            used.setdefault(kind, []).append(int(receipt["gasUsed"]))
    return {kind: {"count": len(g), "total": sum(g), "mean": sum(g) // len(g), "min": min(g), "max": max(g)}
            for kind, g in sorted(used.items())}


def run_demo(options: DemoOptions, *, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the whole story; write ``report.json`` and the plots into ``options.out``; return the report.

    Returns
    -------
    dict
        ``{"demo": {command settings, chain, ledger, bounty id, addresses, files},
        "initial": {"accuracy": evaluation of the initial model},
        "rounds": [{"round", "accuracy": {"mean_center", "all_test_rows", "centers": {name: acc}},
        "auc": {...same...},
        "scores": {name: float (validation-utility units)}, "scores_fixed": {name: on-chain int as str},
        "credits": {name: wei}, "reputation": {name: basis points}, "committed": [name] (on chain), "kept": [name]
        (entered the model), "left_out": {name: reason} (every other committer or uploader: not verified, outside
        the task's bounds, or kept out of the aggregate by the contribution gate, :mod:`aggregator.gate`, or the
        strategy), "gain" (``v(kept) - v(empty)``, what ``pay_only_gain`` decides on; 0 when nothing was kept),
        "v_empty", "v_kept", "metric", "model_hash", "finalize_tx", "seconds"}],
        "institutions": [{"name", "address", "role", "train_rows", "test_rows", "cumulative_score" (on-chain fixed
        point, positive scores only), "score_sum", "contribution_share" (share of the paying rounds' positive scores,
        weighted by their rewards: the payout share but for dust), "reputation", "credited", "claimed",
        "payout_share", "accuracy_federated" (final global model), "accuracy_alone" (the hospital's tuned
        local-only model), "accuracy_personalized" (its own model, the task's personalization), "alone_model",
        "personalized_model" (what each chose on validation), "failure"}], "alone": {name: accuracy_alone},
        "bounty": {"id", "funded", "credited", "refunded", "remaining", "claimed", "identity_holds"} (wei),
        "gas": {kind: {"count", "total", "mean", "min", "max"}},
        "audit": {"verified", "reasons", "checks", "skipped"},
        "timings": {phase: seconds}, "plots": {name: file}}``.
    """
    from tqdm import tqdm

    options.check()
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("the demo's plots need matplotlib: run `make setup` or pip install 'matplotlib>=3.8'")
    say = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    started = time.perf_counter()
    timings: dict[str, Any] = {}

    from aggregator.rules import resolve_rules
    from fedcore.rules import rules_hash
    from fedsets.heart import HEART_CENTERS, heart_paths

    # Every input is read and checked before anything is written: a bad file or option leaves --out untouched.
    resolve_rules(strategy=options.strategy, strategy_params=_strategy_settings(options.strategy, options.model)[0],
                  estimator=options.scorer, seed=options.seed)  # an unknown strategy or scorer is one line here
    site_inputs = read_sites(options) if options.sites else None
    if site_inputs is None:
        heart_paths()  # the raw files are there
    names = [t.name for t in site_inputs.train] if site_inputs is not None else list(HEART_CENTERS)
    roles: dict[str, str] = {}
    for option, role in (("free_rider", FREE_RIDER), ("attacker", ATTACKER)):
        name = getattr(options, option)
        if name is None:
            continue
        if name not in names:
            raise ConfigError(f"--{option.replace('_', '-')} {name!r} is not one of the institutions: "
                              f"{', '.join(names)}")
        roles[name] = role

    out = _prepare_out(options.out)
    state_dir = out / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    task_path = out / "task.json"
    if site_inputs is not None:
        data = write_sites(site_inputs, out / "data", seed=options.seed, strategy=options.strategy,
                           task_path=task_path)
    else:
        data = prepare_heart(out / "data", seed=options.seed, strategy=options.strategy, task_path=task_path,
                             weighting=options.weighting, model=options.model)
    # The sponsor fixes the round rules before anyone trains.
    rules = resolve_rules(spec=data.spec, strategy=options.strategy, strategy_params=data.strategy_params,
                          estimator=options.scorer, seed=options.seed,
                          step_search=HEART_STEP_SEARCH[options.model])
    rules_path = out / "rules.json"
    rules.save(rules_path)
    accounts = {name: demo_account(f"institution/{name}") for name in names}
    participants = _load_participants(data, accounts, roles)
    spec = data.spec
    say(f"fedledger demo: {len(participants)} institutions ({', '.join(names)}), {options.rounds} rounds, strategy "
        f"{options.strategy}, scorer {options.scorer}, seed {options.seed}, chain {options.chain}")
    say(f"data     {data.source}: site CSVs, test parts and the validation set in {out / 'data'}; "
        f"task {spec.name} ({spec.model}, {spec.n_features} features, lr {spec.training.lr:g})")
    for p in participants:
        if p.role == FREE_RIDER:
            say(f"         {p.name} plays a free rider: it sends back a zero update each round, claiming "
                f"{len(p.y)} rows")
        elif p.role == ATTACKER:
            say(f"         {p.name} plays an attacker: it trains on flipped labels")

    with ExitStack() as stack:
        from aggregator.service.app import create_app
        from aggregator.service.coordinator import Coordinator
        from fedcore import codec
        from fedcore.task import task_hash
        from fedledger.sponsor import check_validation_columns, file_sha256
        from ledger.chain import advance_time, fund_account, latest_timestamp, mine
        from ledger.client import BountyParams, FedLedgerClient, epsilon_units
        from ledger.deployment import deploy_fedledger
        from node.remote import DEFAULT_RETRIES, AggregatorClient
        from node.runner import NodeRunner

        # -- chain, sponsor, institutions ---------------------------------------------------------------
        w3, chain_label = _open_chain(options.chain, stack)
        first_block = int(w3.eth.block_number) + 1
        if not w3.eth.accounts:
            raise DemoError(f"the chain at {options.chain} holds no unlocked account to deploy and fund from")
        funder = w3.eth.accounts[0]
        sponsor, aggregator = demo_account("sponsor"), demo_account("aggregator")
        fund_account(w3, sponsor.address, options.reward + GAS_ALLOWANCE)
        fund_account(w3, aggregator.address, GAS_ALLOWANCE)
        for p in participants:
            fund_account(w3, p.address, MIN_STAKE + GAS_ALLOWANCE)
        deployment = deploy_fedledger(w3, funder, min_stake=MIN_STAKE, leave_cooldown=86_400)
        deployment_path = deployment.save(state_dir / "deployment.json")
        ledger = FedLedgerClient.from_deployment(w3, deployment)
        say(f"chain    {chain_label} (chain id {w3.eth.chain_id}): FedLedger deployed at {ledger.address}")

        validation_rows = check_validation_columns(data.validation_path, spec)
        params = BountyParams(
            task_spec_hash=task_hash(spec), validation_set_hash=file_sha256(data.validation_path),
            aggregator=aggregator.address, num_rounds=options.rounds, commit_window=COMMIT_WINDOW,
            deadline=latest_timestamp(w3) + DEADLINE_DAYS * 86_400, rules_hash=rules_hash(rules),
            epsilon_budget=epsilon_units(spec.privacy.epsilon),
        )
        bounty_id = ledger.as_sender(sponsor).create_bounty(params, options.reward)
        say(f"sponsor  {sponsor.address} funded bounty {bounty_id} with {_ether(options.reward)} for "
            f"{options.rounds} rounds (task 0x{task_hash(spec).hex()[:12]}…, validation set of {validation_rows} rows "
            f"0x{file_sha256(data.validation_path).hex()[:12]}…)")
        for p in participants:
            ledger.as_sender(p.account).join(p.name, "", stake=MIN_STAKE)
            say(f"join     {p.name:<12} {p.address} staked {_ether(MIN_STAKE)} ({len(p.y)} training rows)")

        # -- the aggregator service ---------------------------------------------------------------------
        context = local_aggregator_context(w3, aggregator, bounty_id=bounty_id, data=data,
                                           deployment_path=deployment_path, state_dir=state_dir,
                                           rules_path=rules_path, seed=options.seed)
        stack.callback(context.close)
        app = create_app(context=context, run_coordinator=False)
        coordinator = Coordinator(context)
        if options.chain == "embedded":
            from anyio.from_thread import start_blocking_portal

            portal = stack.enter_context(start_blocking_portal())
            base_url, transport, wire = IN_PROCESS_URL, in_process_transport(app, portal), "in-process HTTP (ASGI)"
        else:
            base_url = _serve_http(app, stack)
            transport, wire = None, f"HTTP at {base_url}"
        say(f"aggregator {aggregator.address} serves bounty {bounty_id} over {wire}: strategy {options.strategy}"
            f"{' ' + json.dumps(data.strategy_params) if data.strategy_params else ''}, scorer {options.scorer}")

        node_lines: list[str] = []
        for p in participants:
            # in process, a failed request is a bug, not an outage worth retrying
            client = AggregatorClient(base_url, transport=transport, retries=0 if transport else DEFAULT_RETRIES)
            stack.callback(client.close)
            p.runner = NodeRunner(
                ledger=ledger, aggregator=client, account=p.account, bounty_id=bounty_id, X=p.X, y=p.y,
                state_dir=state_dir / "nodes" / p.name, spec=spec, progress=False, echo=node_lines.append,
                trainer=zero_update if p.role == FREE_RIDER else None,
            )
            stack.callback(p.runner.close)
        timings["setup"] = time.perf_counter() - started

        # -- baselines: each hospital alone, its tuned local-only model (node.personalize) ------------------
        from fedcore.metrics import accuracy
        from fedledger.simulation import evaluate_federation
        from node.personalize import best_local_only, personalize

        mark = time.perf_counter()
        initial = codec.decode(context.initial_model(), expected=context.expected)
        alone: dict[str, float] = {}
        alone_choice: dict[str, str] = {}
        alone_models = {}
        bar = tqdm(participants, desc="alone", unit="hospital", disable=_disabled(options.progress), leave=False,
                   file=sys.stderr)
        for p in bar:
            model = best_local_only(p.X, p.y, spec, seed=options.seed)
            alone[p.name] = accuracy(p.evaluation.y_test, model.predict(p.evaluation.X_test))
            alone_choice[p.name] = model.choice.label
            alone_models[p.name] = model
        bar.close()
        timings["baselines"] = time.perf_counter() - mark
        evaluations = [p.evaluation for p in participants]
        initial_eval = evaluate_federation(spec, initial, evaluations)
        by_address = {p.address: p for p in participants}

        # -- the rounds --------------------------------------------------------------------------------
        mark = time.perf_counter()
        rounds: list[dict[str, Any]] = []
        bar = tqdm(total=options.rounds, desc=f"bounty {bounty_id} rounds", unit="round",
                   disable=_disabled(options.progress), file=sys.stderr)
        round_started = time.perf_counter()
        global_models = [initial]  # what each round started from, then the final model (Ditto replays them)

        def finalized(number: int) -> None:
            nonlocal round_started
            record = context.state.round(number)
            if record is None or record.new_model_sha is None:
                raise FedLedgerError(f"round {number} finalized without a new model in the aggregator's state")
            weights = codec.decode(context.blobs.get("models", record.new_model_sha), expected=context.expected)
            global_models.append(weights)
            evaluation = evaluate_federation(spec, weights, evaluations)
            scores = record.scores or {}
            name_of = lambda address: by_address[address].name if address in by_address else address  # noqa: E731
            row: dict[str, Any] = {
                "round": number,
                "accuracy": _metric(evaluation, "accuracy"),
                "auc": _metric(evaluation, "auc"),
                "scores": {name_of(a): v for a, v in sorted((scores.get("values") or {}).items())},
                "scores_fixed": {name_of(a): v for a, v in sorted((scores.get("fixed_point") or {}).items())},
                **round_story(
                    committed=[name_of(a) for a in context.ledger.commitments(number, from_block=record.open_block)],
                    used=[name_of(u["institution"]) for u in record.used or []],
                    excluded={name_of(a): why for a, why in (record.excluded or {}).items()},
                    left_out_by_strategy={name_of(a): why for a, why in
                                          ((record.aggregate or {}).get("excluded_by_strategy") or {}).items()},
                    v_empty=scores.get("v_empty"), v_grand=scores.get("v_grand")),
                "metric": scores.get("metric"),
                "model_hash": "0x" + record.new_model_sha, "finalize_tx": record.finalize_tx,
                "seconds": time.perf_counter() - round_started,
            }
            rounds.append(row)
            round_started = time.perf_counter()
            shown = ", ".join(f"{p.name} {row['scores'][p.name]:+.4f}" for p in participants if p.name in row["scores"])
            gated = f"; left out of the model: {', '.join(row['left_out'])}" if row["left_out"] else ""
            say(f"round {number:>2}/{options.rounds}  {len(row['committed'])} committed on chain, "
                f"{len(row['kept'])} entered the model (gain {row['gain']:+.4f}); scores {shown}{gated}; "
                f"accuracy {row['accuracy']['mean_center']:.3f} (mean over hospitals)")
            bar.update(1)

        # The embedded chain stamps its pending block when it mines the previous one: after minutes of baselines,
        # round 1 would open at that stale time and its commit window would be over before anyone trained.
        mine(w3)
        outcome = _drive(coordinator, participants, w3, context, finalized, say, advance_time,
                         {p for p in Phase if p.terminal}, limit=options.rounds * 40, status=bar.set_postfix_str)
        bar.close()
        if outcome != Phase.COMPLETED:
            raise DemoError(f"bounty {bounty_id} ended {outcome} after {len(rounds)} rounds")
        timings["rounds"] = time.perf_counter() - mark
        timings["per_round_mean"] = timings["rounds"] / max(1, len(rounds))

        # -- each hospital's own model, built from the federation's models and its own rows -------------
        mark = time.perf_counter()
        personal: dict[str, float] = {}
        personal_choice: dict[str, str] = {}
        for p in participants:
            model = personalize(global_models[:-1], global_models[-1], p.X, p.y, spec, seed=options.seed,
                                local_only=alone_models[p.name])
            personal[p.name] = accuracy(p.evaluation.y_test, model.predict(p.evaluation.X_test))
            personal_choice[p.name] = model.choice.label
            say(f"personal {p.name:<12} {model.choice.label}: accuracy {personal[p.name]:.3f} "
                f"(alone {alone[p.name]:.3f}, "
                f"federated {rounds[-1]['accuracy']['centers'].get(p.name, float('nan')):.3f})")
        timings["personalization"] = time.perf_counter() - mark

        # -- payouts -----------------------------------------------------------------------------------
        mark = time.perf_counter()
        claimed: dict[str, int] = {}
        for p in participants:
            unclaimed, _ = ledger.contribution_of(bounty_id, p.address)
            claimed[p.name] = ledger.as_sender(p.account).claim(bounty_id) if unclaimed else 0
            say(f"claim    {p.name:<12} claimed {_ether(claimed[p.name])}")
        remaining = ledger.escrow_of(bounty_id)
        if remaining:
            ledger.as_sender(sponsor).refund_remainder(bounty_id)
            say(f"sponsor  took back {_ether(remaining)} ({remaining} wei) that no round credited")
        timings["payouts"] = time.perf_counter() - mark

        # -- audit -------------------------------------------------------------------------------------
        import httpx

        from fedledger.audit_verify import HttpAggregator, format_report, verify_bounty
        from ledger.audit import sync_index, trace
        from ledger.trace import format_eth

        mark = time.perf_counter()
        db = state_dir / "index.sqlite"
        sync_index(w3, deployment, db)
        http = httpx.Client(base_url=base_url, transport=transport, timeout=60)
        stack.callback(http.close)
        audit = verify_bounty(ledger, db, bounty_id, source=HttpAggregator(base_url, client=http), recompute=True,
                              task=data.task_path, validation=data.validation_path, rules=rules_path)
        for line in format_report(audit).splitlines()[1:]:
            say(f"audit    {line.strip()}")
        books = trace(db, bounty_id, ledger)
        timings["audit"] = time.perf_counter() - mark

        # -- the books ---------------------------------------------------------------------------------
        for row in rounds:
            books_of_round = books.round(row["round"])
            row["credits"] = {by_address[who].name: credit for who, credit in books_of_round.credits.items()}
            row["reputation"] = {by_address[who].name: rep for who, rep in books_of_round.reputation.items()}
        amounts = {"funded": books.books.funded, "credited": books.books.credited, "refunded": books.books.refunded,
                   "remaining": ledger.escrow_of(bounty_id), "claimed": books.books.claimed}
        money: dict[str, Any] = {"id": bounty_id, **amounts, "matches_contract": books.books.matches_contract,
                                 "identity_holds": amounts["funded"] == amounts["credited"] + amounts["refunded"]
                                 + amounts["remaining"]}
        money.update({f"{k}_eth": format_eth(v) for k, v in amounts.items()})
        earned = {p.name: books.institution(p.address) for p in participants}
        cumulative = {name: e.cumulative_score for name, e in earned.items()}
        shares = books.contribution_shares()
        institutions = []
        for p in participants:
            credited, claimed_wei = earned[p.name].credited, earned[p.name].claimed
            last = rounds[-1] if rounds else None
            institutions.append({
                "name": p.name, "address": p.address, "role": p.role,
                "train_rows": int(len(p.y)), "test_rows": int(len(p.evaluation.y_test)),
                "cumulative_score": int(cumulative[p.name]),
                "score_sum": float(sum(r["scores"].get(p.name) or 0.0 for r in rounds)),
                "contribution_share": shares.get(p.address, 0.0),
                "reputation": int(ledger.institution(p.address).reputation),
                "credited": credited, "claimed": claimed_wei,
                "credited_eth": format_eth(credited), "claimed_eth": format_eth(claimed_wei),
                "payout_share": credited / books.books.credited if books.books.credited else 0.0,
                "accuracy_federated": last["accuracy"]["centers"].get(p.name) if last else None,
                "accuracy_alone": alone[p.name],
                "accuracy_personalized": personal[p.name],
                "alone_model": alone_choice[p.name],
                "personalized_model": personal_choice[p.name],
                "failure": p.failure,
            })
        actors = {funder, sponsor.address, aggregator.address, *(p.address for p in participants)}
        gas = _gas_by_kind(w3, ledger, first_block, {w3.to_checksum_address(a) for a in actors})
        report: dict[str, Any] = {
            "demo": {
                "data": data.source, "institutions": names, "rounds": options.rounds, "strategy": options.strategy,
                "strategy_params": data.strategy_params, "scorer": options.scorer, "seed": options.seed,
                "chain": options.chain, "chain_id": int(w3.eth.chain_id), "ledger": ledger.address,
                "bounty_id": bounty_id, "sponsor": sponsor.address, "aggregator": aggregator.address,
                "free_rider": options.free_rider, "attacker": options.attacker, "model": options.model,
                "reward": options.reward,
                "task": spec.to_dict(), "task_hash": "0x" + task_hash(spec).hex(),
                "validation_set_hash": "0x" + file_sha256(data.validation_path).hex(),
                "validation_rows": validation_rows, "transport": wire, "command": _command(options), "out": str(out),
            },
            "initial": {"accuracy": _metric(initial_eval, "accuracy"), "auc": _metric(initial_eval, "auc")},
            "alone": alone,
            "rounds": rounds,
            "institutions": institutions,
            "bounty": money,
            "gas": gas,
            "audit": {k: audit[k] for k in ("verified", "reasons", "checks", "skipped")},
            "node_log": node_lines,
        }

    from fedledger import demo_report

    mark = time.perf_counter()
    report["plots"] = demo_report.write_plots(report, out)
    timings["plots"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    from fedcore.files import write_atomic

    write_atomic(out / "report.json", (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return report


def _disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _metric(evaluation: dict, key: str) -> dict[str, Any]:
    return {
        "mean_center": evaluation.get("mean_center", {}).get(key),
        "all_test_rows": evaluation.get("all_test_rows", {}).get(key),
        "centers": {name: m[key] for name, m in evaluation.get("centers", {}).items()},
    }


def _drive(coordinator, participants: list[Participant], w3, context, finalized: Callable[[int], None],
           say: Callable[[str], None], advance_time, terminal, *, limit: int,
           status: Callable[[str], Any] = lambda text: None) -> str:
    """Alternate the coordinator's steps with every node's poll until the bounty ends; returns how it ended.

    When a round is open and neither the coordinator nor any node moved twice in a row (a node failed), chain time
    is moved past the commit window so the round closes with whoever committed.
    """
    idle = 0
    for _ in range(limit):
        outcome = coordinator.step()
        status(f"aggregator: {outcome}")
        if outcome in terminal:
            return outcome
        if outcome == Phase.FINALIZED:
            finalized(int(context.ledger.bounty().rounds_finalized))
        moved = outcome != Phase.WAITING
        if outcome in (Phase.OPENED, Phase.WAITING):
            for p in participants:
                if p.failure is not None:
                    continue
                status(f"{p.name}: poll, train, commit, upload")
                try:
                    moved = p.runner.poll_once() is not None or moved
                except FedLedgerError as exc:
                    p.failure = " ".join(str(exc).split())
                    say(f"node     {p.name} stopped: {p.failure}")
        if moved:
            idle = 0
            continue
        idle += 1
        if idle >= 2:
            advance_time(w3, COMMIT_WINDOW + 1)
            say("chain    nobody else is uploading: chain time moved past the commit window")
            idle = 0
    raise DemoError(f"the rounds did not finish within {limit} steps")


def _command(options: DemoOptions) -> str:
    parts = ["fedledger", "demo", "--rounds", str(options.rounds), "--strategy", options.strategy, "--scorer",
             options.scorer, "--seed", str(options.seed), "--chain", options.chain, "--reward", str(options.reward),
             "--out", str(options.out)]
    if options.sites:
        parts += ["--sites", *map(str, options.sites), "--label", str(options.label)]
        parts += ["--carve"] if options.carve else ["--validation", str(options.validation), "--test",
                                                    str(options.test)]
        parts += ["--group", options.group] if options.group else []
    if options.weighting:
        parts += ["--weighting", options.weighting]
    if options.free_rider:
        parts += ["--free-rider", options.free_rider]
    if options.attacker:
        parts += ["--attacker", options.attacker]
    if options.model != DEMO_MODEL:
        parts += ["--model", options.model]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# CLI


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fedledger demo``."""
    from fedcore.output import add_format_option
    from ledger.cli import parse_wei

    demo = subparsers.add_parser(
        "demo", help="a whole federation on one machine: bounty, hospitals, rounds, scores, payouts, audit",
        allow_abbrev=False,
        description=(
            "Run the whole story in one process: a sponsor funds a bounty; the four Fed-Heart-Disease hospitals "
            "(or your --sites) join; every round each trains locally, commits the hash of its update on chain and "
            "uploads it to the aggregator, which verifies, aggregates, scores contributions and finalizes; the "
            "hospitals claim their rewards; an auditor verifies everything, recomputing models and scores. Prints "
            "accuracy per round, each hospital's personalized model against its tuned local-only model, "
            "contribution shares, reputations and payouts; "
            "writes report.json and PNG plots to --out."
        ),
    )
    demo.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, metavar="N",
                      help="federated rounds (default: %(default)s, FLamby's budget)")
    demo.add_argument("--strategy", default="fedavg",
                      help="aggregation strategy: fedavg, fedprox, fedadam, fedyogi, fedadagrad, median, trimmed_mean, "
                           "krum, multikrum (default: %(default)s; FLamby's settings for it)")
    demo.add_argument("--scorer", default="gtg",
                      help="contribution estimator: gtg, tmc, mc, exact, loo, gain, alignment (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED,
                      help="seed of the data carving, the initial model, training and scoring (default: %(default)s)")
    demo.add_argument("--chain", default="embedded", metavar="embedded|ganache|anvil|URL",
                      help="the in-process chain, a Ganache or Anvil started for the run, or a JSON-RPC dev chain "
                           "with an unlocked account (default: %(default)s)")
    demo.add_argument("--sites", nargs="+", default=(), metavar="FILE",
                      help="your own per-site CSV files (one institution each) instead of Fed-Heart-Disease")
    demo.add_argument("--label", default=None, metavar="COLUMN", help="the 0/1 label column of the --sites files")
    demo.add_argument("--validation", default=None, metavar="FILE",
                      help="with --sites: the sponsor's validation CSV (its columns but --label and --group are the "
                           "task's features; its hash goes on chain; contributions are scored on it)")
    demo.add_argument("--test", default=None, metavar="FILE",
                      help="with --sites: the sponsor's test CSV (every institution's results are reported on it)")
    demo.add_argument("--carve", action="store_true",
                      help="with --sites, instead of --validation and --test: carve them from the site files "
                           "(each file split into train and test, a validation slice carved from the train part)")
    demo.add_argument("--group", default=None, metavar="COLUMN",
                      help="with --validation: its column naming each row's group (site, region, any stratum)")
    demo.add_argument("--weighting", default=None, choices=("pooled", "equal"),
                      help="the utility's weighting of the validation rows: pooled (every row the same), or equal "
                           "per group (default: pooled, chosen by python -m bench.weighting on validation data)")
    demo.add_argument("--free-rider", default=None, metavar="NAME",
                      help="this institution sends back a zero update every round (the global model unchanged)")
    demo.add_argument("--attacker", default=None, metavar="NAME", help="this institution trains on flipped labels")
    demo.add_argument("--model", default=DEMO_MODEL, choices=HEART_MODELS,
                      help="the task's model: logreg (FLamby's) or mlp (the benchmark's ditto_mlp: a 16-unit MLP, "
                           "Ditto personal models, the server step search) "
                           "(default: %(default)s)")
    demo.add_argument("--reward", type=parse_wei, default=DEFAULT_REWARD, metavar="AMOUNT",
                      help="the bounty's reward, e.g. 10ether (default: 10ether)")
    demo.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR",
                      help="where report.json, the plots, the data and the parties' state go (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_format_option(demo)
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from fedledger.demo_report import format_report

    options = DemoOptions(
        rounds=args.rounds, strategy=args.strategy, scorer=args.scorer, seed=args.seed, chain=args.chain,
        sites=tuple(Path(s) for s in args.sites), label=args.label,
        validation=Path(args.validation) if args.validation else None, test=Path(args.test) if args.test else None,
        carve=args.carve, group=args.group, weighting=args.weighting, free_rider=args.free_rider,
        attacker=args.attacker, model=args.model, reward=args.reward, out=Path(args.out),
        progress=False if args.no_progress else None,
    )
    report = run_demo(options)
    if args.format == "json":
        from fedcore.output import emit

        emit(report, "json")
    else:
        print(format_report(report))
    return 0 if report["audit"]["verified"] and report["bounty"]["identity_holds"] else 1
