"""The explorer's FastAPI router and app: a JSON API over the event index, and one static page.

Mount it alone (``fedledger explorer``) or inside another FastAPI app::

    from fedledger.explorer.app import ExplorerSource, create_explorer_router

    router = create_explorer_router(lambda: ExplorerSource(w3, deployment, db_path))
    app.include_router(router, prefix="/explorer")   # page at /explorer/, API at /explorer/api/...

The page uses URLs relative to itself (its ``<base href>`` is set from the request), so any prefix works.
Every request first brings the index up to the chain's latest block, at most once per ``sync_interval``
seconds; if the chain cannot be reached, the index is served as it is and ``/api/status`` says why.
"""

# No `from __future__ import annotations`: FastAPI must see the Annotated dependency aliases defined
# inside create_explorer_router as objects, not as strings it would look up in the module.

import html
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NamedTuple, TypeVar, cast

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from web3 import Web3

from fedcore.errors import ChainError
from fedledger.explorer import schemas, views
from ledger.audit import sync_index
from ledger.deployment import MAIN_CONTRACT, Deployment
from ledger.indexer import last_synced_block, open_db

STATIC_DIR = Path(__file__).with_name("static")
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
DEFAULT_SYNC_INTERVAL = 2.0

log = logging.getLogger(__name__)
T = TypeVar("T")


class ExplorerSource(NamedTuple):
    """What the explorer reads: the chain, where the contract lives, and the SQLite index it keeps in sync."""

    w3: Web3
    deployment: Deployment
    db: str | Path


SourceFactory = Callable[[], ExplorerSource | tuple]


class Explorer:
    """The explorer's state: the source, when it last synced, and views cached per index state.

    Parameters
    ----------
    source : callable
        Returns an ``ExplorerSource`` (or a ``(w3, deployment, db)`` tuple); called at every sync.
    sync_interval : float
        Minimum seconds between two syncs; 0 syncs on every request.
    """

    def __init__(self, source: SourceFactory, *, sync_interval: float = DEFAULT_SYNC_INTERVAL):
        self._source = source
        self.sync_interval = float(sync_interval)
        self._lock = threading.RLock()
        self._last_attempt = float("-inf")
        self.synced_at: float | None = None
        self.sync_error: str | None = None
        self._cache: dict[tuple, object] = {}
        self._cache_events = -1

    def source(self) -> ExplorerSource:
        return ExplorerSource(*self._source())

    def refresh(self) -> "Explorer":
        """Sync the index if the last attempt is older than ``sync_interval``; never raises for the chain."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_attempt < self.sync_interval:
                return self
            self._last_attempt = now
            src = self.source()
            try:
                sync_index(src.w3, src.deployment, src.db)
            except Exception as exc:  # noqa: BLE001 - serve the index as it is, and say why it is stale
                message = " ".join(str(exc).split()) or type(exc).__name__
                if self.sync_error != message:
                    log.warning("explorer: sync failed, serving the index as it is: %s", message)
                self.sync_error = message
            else:
                self.synced_at = time.time()
                self.sync_error = None
            return self

    def event_count(self) -> int:
        conn = open_db(self.source().db)
        try:
            return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        finally:
            conn.close()

    def cached(self, key: tuple, build: Callable[[], T]) -> T:
        """``build()``, recomputed only when the index gained events (the index only ever grows)."""
        with self._lock:
            count = self.event_count()
            if count != self._cache_events:
                self._cache.clear()
                self._cache_events = count
            if key not in self._cache:
                self._cache[key] = build()
            return cast(T, self._cache[key])  # stored by this key's own build

    def status(self) -> dict:
        src = self.source()
        with self._lock:
            return {
                "chain_id": src.deployment.chain_id,
                "contract": src.deployment.address(MAIN_CONTRACT),
                "deployment_block": src.deployment.block(MAIN_CONTRACT),
                "synced_block": last_synced_block(src.db, MAIN_CONTRACT),
                "events": self.event_count(),
                "synced_at": self.synced_at,
                "sync_error": self.sync_error,
                "sync_interval": self.sync_interval,
            }

    def bounty(self, bounty_id: int) -> dict:
        def build() -> dict:
            src = self.source()
            block = last_synced_block(src.db, MAIN_CONTRACT)
            on_chain = None
            if block is not None and self.sync_error is None:
                on_chain = views.contract_books(src.w3, src.deployment, bounty_id, block)
            return views.bounty_detail(src.db, bounty_id, on_chain)

        return self.cached(("bounty", bounty_id), build)


def create_explorer_router(source: SourceFactory, *, sync_interval: float = DEFAULT_SYNC_INTERVAL) -> APIRouter:
    """The explorer's routes: ``/`` (the page), ``/static/{file}``, and the JSON API under ``/api``.

    Parameters
    ----------
    source : callable
        Returns ``ExplorerSource(w3, deployment, db_path)`` (or the same as a tuple).
    sync_interval : float
        Minimum seconds between two index syncs.
    """
    explorer = Explorer(source, sync_interval=sync_interval)
    Fresh = Annotated[Explorer, Depends(explorer.refresh)]
    router = APIRouter(tags=["explorer"])

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request) -> HTMLResponse:
        base = request.url.path if request.url.path.endswith("/") else request.url.path + "/"
        text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(text.replace("{{BASE}}", html.escape(base, quote=True)))

    @router.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-cache"})

    @router.get("/api/status", response_model=schemas.StatusOut, summary="chain, contract and index state")
    def status(ex: Fresh) -> dict:
        return ex.status()

    @router.get("/api/bounties", response_model=list[schemas.BountySummary],
                summary="every bounty: status, asset, rounds, funded/credited/refunded/escrowed/claimed")
    def bounties(ex: Fresh) -> list[dict]:
        src = ex.source()
        return ex.cached(("bounties",), lambda: views.bounty_summaries(src.db))

    @router.get("/api/bounties/{bounty_id}", response_model=schemas.BountyDetail,
                summary="one bounty: rounds, commitments, scores, credits, institutions, payouts, timeline",
                responses={404: {"description": "no such bounty in the index"}})
    def bounty(bounty_id: int, ex: Fresh) -> dict:
        try:
            return ex.bounty(bounty_id)
        except ChainError as exc:
            raise HTTPException(404, str(exc)) from None

    @router.get("/api/institutions", response_model=list[schemas.InstitutionOut],
                summary="every institution: stake, status, reputation, credited and claimed per asset")
    def institutions(ex: Fresh) -> list[dict]:
        src = ex.source()
        return ex.cached(("institutions",), lambda: views.institutions(src.db))

    @router.get("/api/reputation", response_model=schemas.ReputationOut,
                summary="reputation of every institution at the start and after each finalized round")
    def reputation(ex: Fresh) -> dict:
        src = ex.source()
        return ex.cached(("reputation",), lambda: views.reputation(src.db))

    return router


def create_app(source: SourceFactory, *, sync_interval: float = DEFAULT_SYNC_INTERVAL) -> FastAPI:
    """A FastAPI app serving only the explorer, at the root."""
    app = FastAPI(title="fedledger explorer", version="1",
                  description="Bounties, rounds, commitments, scores, payouts and reputation, from the chain's events.")
    app.include_router(create_explorer_router(source, sync_interval=sync_interval))
    return app
