"""``fedledger aggregator serve``: the aggregator's command group.

Every option falls back to an environment variable ``FEDLEDGER_*`` (see
:mod:`aggregator.service.settings`). Heavy imports (web3, torch, FastAPI) happen in the handler.
"""

from __future__ import annotations

import argparse

# option dest -> AggregatorSettings field (where they differ)
_FIELDS = {"bounty": "bounty_id", "task": "task_path", "validation": "validation_path", "keystore": "keystore_path",
           "rules": "rules_path"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``aggregator serve``."""
    group = subparsers.add_parser(
        "aggregator", help="run a bounty's aggregator (HTTP API + round coordinator)",
        description="The aggregator operator's commands.",
    )
    sub = group.add_subparsers(dest="aggregator_command", metavar="ACTION", required=True)
    serve = sub.add_parser(
        "serve", help="serve one bounty: open rounds, verify uploads, aggregate, score, finalize",
        description=(
            "Serve one bounty over HTTP and run its rounds: open each round on chain with the current global model, "
            "accept uploads signed by committed institutions whose bytes match their commitment, close the round when "
            "the commit window is over or every invited institution uploaded (never on the first N uploads), "
            "aggregate with the rules' strategy, score every used update on the validation set with the rules' "
            "estimator, save "
            "everything, then finalize on chain. "
            "Killed at any step, a restart on the same --state-dir resumes without opening or finalizing twice. "
            "Refuses to start unless the key is the bounty's aggregator and the task spec, the validation CSV and the "
            "round rules hash to what the bounty fixed on chain. The validation set must be disjoint from any test "
            "set results are reported on (the sponsor's responsibility). Every option also reads FEDLEDGER_<OPTION> "
            "(e.g. FEDLEDGER_STATE_DIR); the password reads FEDLEDGER_PASSWORD. API docs: http://HOST:PORT/docs."
        ),
    )
    serve.add_argument("--bounty", type=int, metavar="ID", help="the bounty to run (env FEDLEDGER_BOUNTY)")
    serve.add_argument("--task", metavar="FILE",
                       help="task spec JSON; must hash to the bounty's taskSpecHash (env FEDLEDGER_TASK)")
    serve.add_argument("--validation", metavar="CSV",
                       help="validation CSV (feature columns + label); sha256 of its bytes must be the bounty's "
                            "validationSetHash (env FEDLEDGER_VALIDATION)")
    serve.add_argument("--keystore", metavar="FILE",
                       help="the aggregator's encrypted keystore JSON (env FEDLEDGER_KEYSTORE)")
    serve.add_argument("--password-file", metavar="FILE",
                       help="file whose first line is the keystore password (else env FEDLEDGER_PASSWORD)")
    serve.add_argument("--rpc", metavar="URL", help="chain JSON-RPC URL (env FEDLEDGER_RPC; default http://127.0.0.1:8545)")
    serve.add_argument("--deployment", metavar="PATH",
                       help="deployment file (env FEDLEDGER_DEPLOYMENT; default ./deployment.json)")
    serve.add_argument("--state-dir", metavar="DIR",
                       help="SQLite state and stored updates/models "
                            "(env FEDLEDGER_STATE_DIR; default ./aggregator-state)")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    serve.add_argument("--rules", metavar="FILE",
                       help="the bounty's round rules JSON (strategy, estimator, utility metric, scoring seed), as "
                            "`fedledger sponsor rules` wrote it; must hash to the bounty's rulesHash "
                            "(env FEDLEDGER_RULES)")
    serve.add_argument("--max-upload-bytes", type=int, metavar="N", help="largest accepted update (default 64 MiB)")
    serve.add_argument("--max-concurrent-uploads", type=int, metavar="N",
                       help="upload bodies read at once; more are answered 503 busy with Retry-After (default 8)")
    serve.add_argument("--upload-read-timeout", type=float, metavar="SECONDS",
                       help="an upload body slower than this is answered 408 and its connection closed (default 30)")
    serve.add_argument("--max-connections", type=int, metavar="N",
                       help="open HTTP connections accepted at once; more are answered 503 (default 256)")
    serve.add_argument("--seed", type=int, help="seed of reputation sampling (default 0)")
    serve.add_argument("--selection", choices=("all", "reputation"),
                       help="invite every eligible institution, or K sampled by reputation (default all)")
    serve.add_argument("--clients-per-round", type=int, metavar="K", help="K for --selection reputation")
    serve.add_argument("--upload-grace", type=float, metavar="SECONDS",
                       help="after the commit window, wait this long for committed institutions still uploading "
                            "(default 30)")
    serve.add_argument("--poll-interval", type=float, metavar="SECONDS", help="seconds between chain polls (default 1)")
    serve.add_argument("--no-wall-clock", dest="wall_clock", action="store_const", const=False,
                       help="judge the commit window by block timestamps only (default: also by this machine's clock)")
    serve.add_argument("--exit-when-complete", action="store_const", const=True,
                       help="stop serving once the bounty is completed, cancelled or expired")
    serve.add_argument("--log-level", choices=("critical", "error", "warning", "info", "debug"), help="default info")
    serve.set_defaults(func=_serve)


def settings_from_args(args: argparse.Namespace):
    """AggregatorSettings from the environment, overridden by the options given."""
    from aggregator.service.settings import load_settings

    names = ("bounty", "task", "validation", "keystore", "password_file", "rpc", "deployment", "state_dir", "host",
             "port", "rules", "max_upload_bytes", "max_concurrent_uploads", "upload_read_timeout", "max_connections",
             "seed", "selection", "clients_per_round", "upload_grace", "poll_interval", "wall_clock",
             "exit_when_complete", "log_level")
    return load_settings({_FIELDS.get(name, name): getattr(args, name, None) for name in names})


def _serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from aggregator.service.app import create_app
    from aggregator.service.context import build_context

    settings = settings_from_args(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    context = build_context(settings)
    server: uvicorn.Server | None = None

    def on_complete(outcome: str) -> None:
        if settings.exit_when_complete and server is not None:
            server.should_exit = True

    app = create_app(settings, context=context, on_complete=on_complete)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            lifespan="on", access_log=settings.log_level == "debug",
                            limit_concurrency=settings.max_connections)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        context.close()
    return 0
