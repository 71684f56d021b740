"""A Flower round of bench.round's federation: ``python -m bench.flower_round WORK_DIR`` in Flower's own virtualenv.

Flower 1.42 pins older fastapi, starlette, uvicorn and packaging than this project's, so it lives in a separate
virtualenv (``make bench-round`` builds ``.venv-flower``: torch, ``flwr[simulation]``, safetensors, tqdm) and this
module imports nothing of ours but ``fedcore`` and ``node.training`` (numpy and torch only), from the source tree.

``WORK_DIR`` holds what :mod:`bench.round` wrote: ``flower.json`` (``task`` path, ``seed``, ``rounds``, ``config``
(the rules' fit config), ``clients`` (address per client)) and ``client-<i>.npz`` (``X``, ``y``). Each client trains
with :func:`node.training.train_local` from the same initial weights and with the same seed per round and address as
the plain round; Flower's own ``FedAvg`` (weighted by the sample counts) aggregates, in Flower's simulation engine
(Ray; one CPU per client actor). Prints one JSON line: ``{"round_seconds": [...], "flwr": version, "backend": ...}``,
the wall-clock seconds between the ends of consecutive rounds (the first round, from the start of the strategy).
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np


@cache
def _setup(work: str):
    from fedcore.jsondoc import read
    from fedcore.task import TaskSpec

    meta = json.loads((Path(work) / "flower.json").read_text())
    spec = TaskSpec.from_dict(read(meta["task"], "task")).with_training(seed=int(meta["seed"]))
    return meta, spec


@cache
def _client_data(work: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(work) / f"client-{index}.npz") as data:
        return data["X"], data["y"]


def _client_app(work: str):
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from fedcore.seeds import training_seed
    from node.training import apply_update, train_local

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        meta, spec = _setup(work)
        index = int(context.node_config["partition-id"])
        X, y = _client_data(work, index)
        global_weights = msg.content["arrays"].to_numpy_ndarrays()
        names = meta["names"]
        weights = dict(zip(names, global_weights))
        round_ = int(msg.content["config"]["server-round"])
        address = meta["clients"][index]
        update = train_local(weights, X, y, spec, seed=training_seed(spec.training.seed, round_, address),
                             config=meta["config"], institution=address)
        local = apply_update(weights, update.arrays)
        content = RecordDict({"arrays": ArrayRecord([local[n] for n in names]),
                              "metrics": MetricRecord({"num-examples": int(update.num_samples)})})
        return Message(content=content, reply_to=msg)

    return app


def _server_app(work: str, marks: list[float]):
    from flwr.app import ArrayRecord, Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from fedcore.models import initial_weights

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        meta, spec = _setup(work)
        n = len(meta["clients"])
        start = initial_weights(spec, _client_data(work, 0)[0].shape[1])
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)

        def mark(server_round: int, arrays: ArrayRecord) -> None:
            marks.append(time.perf_counter())  # called before round 1 and after each round

        strategy.start(grid=grid, initial_arrays=ArrayRecord([start[k] for k in meta["names"]]),
                       num_rounds=int(meta["rounds"]), evaluate_fn=mark)

    return app


def main(argv: list[str] | None = None) -> None:
    import logging

    import flwr
    from flwr.simulation import run_simulation

    work = str(Path((argv or sys.argv[1:])[0]).resolve())
    meta, _ = _setup(work)
    # the client actors need the names the server derives: write them before the simulation starts
    from fedcore.models import initial_weights

    X, _ = _client_data(work, 0)
    meta["names"] = list(initial_weights(_setup(work)[1], X.shape[1]))
    (Path(work) / "flower.json").write_text(json.dumps(meta))
    _setup.cache_clear()
    logging.getLogger("flwr").setLevel(logging.WARNING)
    marks: list[float] = []
    cpus = os.cpu_count() or 1
    run_simulation(server_app=_server_app(work, marks), client_app=_client_app(work),
                   num_supernodes=len(meta["clients"]),
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cpus, "include_dashboard": False}})
    print(json.dumps({"round_seconds": [b - a for a, b in zip(marks, marks[1:])], "flwr": flwr.__version__,
                      "backend": f"ray, {cpus} CPUs, one per client actor"}))


if __name__ == "__main__":
    main()
