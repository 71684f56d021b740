"""``create_app(settings)``: the aggregator's FastAPI app, with the round coordinator running beside it.

The coordinator runs in a background thread started by the app's lifespan and stopped with it. Tests build
the app around a ready :class:`ServiceContext` (``create_app(context=ctx, run_coordinator=False)``) or
override :func:`aggregator.service.deps.get_context`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aggregator.service.context import ServiceContext, build_context
from aggregator.service.coordinator import Coordinator
from aggregator.service.rejection import Rejected
from aggregator.service.routers import committee, health, models, rounds, tasks, updates
from aggregator.service.settings import AggregatorSettings
from fedcore.errors import AggregatorError, ChainError, FedLedgerError
from fedcore.protocol import REJECTION_STATUS, ErrorBody, RejectionCode

log = logging.getLogger("fedledger.aggregator")

API_VERSION = "1"


def create_app(
    settings: AggregatorSettings | None = None,
    *,
    context: ServiceContext | None = None,
    run_coordinator: bool = True,
    on_complete: Callable[[str], None] | None = None,
) -> FastAPI:
    """Build the app.

    Parameters
    ----------
    settings : AggregatorSettings, optional
        Used to build the context at startup when ``context`` is not given.
    context : ServiceContext, optional
        A ready context (the CLI builds it before binding the port, so startup errors are one line).
    run_coordinator : bool
        Start the round loop in a background thread.
    on_complete
        Passed to :class:`Coordinator`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = context
        owned = False
        if ctx is None and settings is not None:
            ctx, owned = build_context(settings), True
        app.state.context = ctx
        stop = threading.Event()
        thread = None
        if run_coordinator and ctx is not None:
            coordinator = Coordinator(ctx, on_complete=on_complete)
            app.state.coordinator = coordinator
            thread = threading.Thread(target=coordinator.run, args=(stop,), name="fedledger-coordinator", daemon=True)
            thread.start()
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=30)
            if owned and ctx is not None:
                ctx.close()

    app = FastAPI(
        title="fedledger aggregator",
        version=API_VERSION,
        description=(
            "Round coordinator of one fedledger bounty. Institutions read the task and the current round, download "
            "the global model (check its sha256 against the chain), commit sha256(update) on chain, then POST the "
            "update signed with fedcore.signing.sign_upload. Auditors download stored updates, models and optimizer "
            "states by sha256 and read each round's record. Every error is {\"detail\": \"one line\", \"code\": ...} "
            "(fedcore.protocol.ErrorBody): branch on the code."
        ),
        lifespan=lifespan,
    )
    app.state.context = context  # usable without the lifespan (e.g. TestClient outside a with block)
    for module in (health, tasks, rounds, models, updates, committee):
        app.include_router(module.router)

    @app.exception_handler(Rejected)
    async def _rejected(request: Request, exc: Rejected) -> JSONResponse:
        return error_response(exc.code, exc.detail, headers={**exc.headers, **_closing(request)})

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(RejectionCode.MALFORMED, _one_line(exc.errors()), headers=_closing(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # unknown path, wrong method
        code = RejectionCode.NOT_FOUND if exc.status_code == 404 else (
            RejectionCode.INTERNAL if exc.status_code >= 500 else RejectionCode.MALFORMED)
        return error_response(code, str(exc.detail), status=exc.status_code)

    @app.exception_handler(ChainError)
    async def _chain_down(request: Request, exc: ChainError) -> JSONResponse:
        return error_response(RejectionCode.UNAVAILABLE, f"chain unavailable: {_squash(exc)}")

    @app.exception_handler(FedLedgerError)
    async def _internal(request: Request, exc: FedLedgerError) -> JSONResponse:
        log.warning("request %s %s failed: %s", request.method, request.url.path, exc)
        code = RejectionCode.INTERNAL if isinstance(exc, AggregatorError) else RejectionCode.MALFORMED
        return error_response(code, _squash(exc))

    return app


def error_response(code: RejectionCode, detail: str, *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An :class:`ErrorBody` with the code's HTTP status (or ``status`` for framework errors)."""
    body = ErrorBody(detail=" ".join(detail.split()) or code.value, code=code)
    return JSONResponse(body.model_dump(mode="json"), status_code=status or REJECTION_STATUS[code], headers=headers)


def _closing(request: Request) -> dict[str, str]:
    """``Connection: close`` for a refused POST: its unread body must not keep the connection (or a client) busy."""
    return {"Connection": "close"} if request.method == "POST" else {}


def _squash(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _one_line(errors: Sequence[Mapping[str, Any]]) -> str:
    if not errors:
        return "malformed request"
    error = errors[0]
    where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("path", "query", "header", "body"))
    if where:
        return f"malformed request: {where}: {error.get('msg', 'invalid')}"
    return f"malformed request: {error.get('msg')}"
