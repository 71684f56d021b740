"""``fedledger explorer``: serve the web explorer over a chain's event index."""

from __future__ import annotations

import argparse

from fedcore.errors import ConfigError
from ledger.cli import add_deployment_option, add_rpc_option

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``explorer`` command."""
    parser = subparsers.add_parser(
        "explorer", help="serve the web explorer: bounties, rounds, scores, payouts, reputation",
        description=(
            "Serve a web page for auditors and members, with its JSON API under /api: every bounty (status, asset, "
            "funded, credited, refunded, escrowed), its rounds (global model hashes, commitments with update hashes "
            "and sample counts, scores, credits), institutions (credited, claimed, cumulative score), payouts, and "
            "reputation over time. Everything comes from the chain's events, indexed in SQLite (beside the "
            "deployment file unless --db) and synced at most every --sync-interval seconds while the page is open."
        ),
    )
    add_rpc_option(parser)
    add_deployment_option(parser)
    parser.add_argument("--db", default=None, metavar="PATH", help="event index (default: <deployment>.index.sqlite)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)")
    parser.add_argument("--sync-interval", type=float, default=2.0, metavar="SECONDS",
                        help="minimum seconds between two index syncs (default: %(default)s)")
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fedledger.explorer.app import ExplorerSource, create_app
    from ledger.audit import default_index_path, sync_index
    from ledger.chain import EMBEDDED, connect
    from ledger.deployment import Deployment

    if args.rpc in ("", EMBEDDED):
        raise ConfigError("the embedded chain lives only inside one process: point --rpc at a JSON-RPC node")
    if args.sync_interval < 0:
        raise ConfigError(f"--sync-interval must be >= 0, not {args.sync_interval}")
    deployment = Deployment.load(args.deployment)
    w3 = connect(args.rpc)
    deployment.check_chain(w3)
    db = args.db or default_index_path(args.deployment)
    added = sync_index(w3, deployment, db)  # fail fast on a wrong chain or index, before serving
    source = ExplorerSource(w3, deployment, db)
    app = create_app(lambda: source, sync_interval=args.sync_interval)
    print(f"fedledger explorer on http://{args.host}:{args.port}/ (chain {deployment.chain_id}, index {db}, "
          f"{added} new events)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
