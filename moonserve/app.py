"""The composition root: the FastAPI application built from every layer below it (the store, the
engines, the service, the protocols, the console), its start-up (migrations, first run, engines)
and its shutdown."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from . import __version__
from .accounts.availability import DatabaseState
from .accounts.console_users import ConsoleUsers
from .accounts.remembered import RememberedAccess
from .accounts.store import Store
from .accounts.stored_responses import StoredResponses
from .config import Config
from .engines import create_engine, resolve
from .service.accounting import Accounting
from .service.bootstrap import FirstRun, console_owner, first_run
from .media.fetch import FetchPolicy, Fetcher
from .service.service import Service
from .service.media import MediaLoader
from .service.signatures import load_signer
from .console import routes as console
from .api import errors
from .api.metrics import Metrics
from .api.routes import router
from .protocols import routers as protocol_routers
from .protocols.chat.routes import OPENAPI_SCHEMAS

log = logging.getLogger("moonserve")


def create_app(config: Config, *, on_first_run: Callable[[FirstRun], None] | None = None,
               on_console_owner: Callable[[str, str], None] | None = None) -> FastAPI:
    resolve(config)  # each deployment's settings as its engine reads them (a ConfigError before anything starts)
    store = Store(config.database_url)
    console_users = ConsoleUsers(store.engine)
    engines = {name: create_engine(config.deployments[name], config.models_dir) for name in config.served}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store.migrate()
        fr = first_run(store, config)
        if fr and on_first_run:
            on_first_run(fr)
        owner = console_owner(console_users)
        if owner and on_console_owner:
            on_console_owner(*owner)
        started: list = []
        watch = asyncio.create_task(app.state.accounting.watch())  # delivers a journal left by the last run too
        try:
            for name, engine in engines.items():
                await engine.start()
                started.append(engine)
                log.info("deployment %s ready", name)
            yield
        finally:
            watch.cancel()
            for engine in started:
                await engine.close()

    app = FastAPI(title="Moonserve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.store = store
    app.state.console_users = console_users
    app.state.engines = engines
    m = config.media
    fetcher = Fetcher(FetchPolicy(frozenset(h.lower() for h in m.allow_hosts), m.connect_timeout, m.read_timeout,
                                  m.total_timeout, m.max_redirects))
    database = app.state.database = DatabaseState(store.engine)
    app.state.accounts = RememberedAccess(store, database)
    app.state.accounting = Accounting(config, store, database)
    app.state.service = Service(config, app.state.accounts, engines, MediaLoader(fetcher, m.max_video_frames),
                                    app.state.accounting)
    app.state.metrics = Metrics(engines, database, app.state.accounting.journal)
    app.state.started_at = int(time.time())
    app.state.signer = load_signer(config.home)
    app.state.stored_responses = StoredResponses(store.engine, timedelta(days=config.responses.retention_days))
    errors.install(app)
    app.include_router(router)
    for protocol in protocol_routers():
        app.include_router(protocol)
    console.install(app)

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=__version__, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(OPENAPI_SCHEMAS)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    return app
