"""PTfer Studio's server: ``streamlit run app.py``.

The pages are ``router.py`` (the router) and ``app_pages/``. This file serves them as an ASGI app (``st.App``) whose
start-up imports torch and the engine before the server reports healthy, so the first page that needs them, often a
shared link to a preset, does not wait seconds for it (`docs/benchmarks.md`). The default pair's real models then load
and UMAP's kernels compile in the background. A page opened by its own URL (``/transfer?preset=…``) is told where the
server is, so it connects without first trying a wrong address (`ptfer_app.base_hint`). ``streamlit run router.py``
serves the same pages without either.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from ptfer_app.base_hint import PageBaseHint


@asynccontextmanager
async def start_up(_app):
    from ptfer_app import services

    await asyncio.to_thread(services.preload)
    services.warm_up_defaults()
    yield


app = st.App(Path(__file__).with_name("router.py"), lifespan=start_up, middleware=[Middleware(PageBaseHint)])
