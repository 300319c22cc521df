"""The Airflow UI's model-operations view: "Model ops" in the navigation bar.

A FastAPI app mounted on the api-server at ``/mlops``, shown inside the Airflow UI through an
external view (``/plugin/mlops``):

``/mlops/``                      champion and challenger (version, run, metrics, aliases), the router's
                                 live weights and the latest canary checks, the newest drift reports,
                                 the deployment audit log
``/mlops/reports/ds=.../<file>`` a drift report file (HTML or JSON) from the lake's reports folder only
``/mlops/api/overview``          the same data as JSON

Every route but the icon needs an Airflow login (the UI's session cookie or a bearer token), checked
by the api-server's auth manager. Importing this module is cheap (every Airflow process loads
plugins): the app is built on its first request, and the data is read per request by
``mlops_pipeline.ui``.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/mlops"
VIEW_ROUTE = "mlops"

ICON_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2"'
    ' stroke-linecap="round" stroke-linejoin="round"><path d="M3 3v18h18"/><path d="M7 15l4-4 3 3 5-6"/>'
    '<circle cx="19" cy="8" r="1.5"/></svg>'
)


def create_app() -> Any:
    """The FastAPI app (built lazily: it imports the api-server's security helpers)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    app = FastAPI(title="Model operations", docs_url=None, redoc_url=None, openapi_url=None)
    # Whoever may use the Airflow UI may see this view (the auth manager decides who that is).
    authorized = [Depends(requires_access_view(AccessView.WEBSITE))]

    @app.exception_handler(StarletteHTTPException)
    async def login_first(request: Request, exc: StarletteHTTPException) -> Response:
        """A browser without a session goes to the login page and comes back; API clients get the error."""
        if exc.status_code == 401 and "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    def chosen(dataset: str | None) -> Any:
        """The picker's dataset (``?dataset=<name>``; none: the primary one), or a 404 naming the parameter."""
        from mlops_pipeline.ui.overview import UnknownDataset, choose

        try:
            return choose(dataset)
        except UnknownDataset as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    def overview_of(dataset: str | None) -> Any:
        from mlops_pipeline.ui.overview import gather

        settings, name, choices = chosen(dataset)
        overview = gather(settings)
        overview.dataset, overview.choices = name, choices
        return overview

    @app.get("/", response_class=HTMLResponse, dependencies=authorized)
    def overview_page(dataset: str | None = None) -> HTMLResponse:
        from mlops_pipeline.ui.render import render_page

        return HTMLResponse(render_page(overview_of(dataset)), headers={"Cache-Control": "no-store"})

    @app.get("/api/overview", dependencies=authorized)
    def overview_json(dataset: str | None = None) -> JSONResponse:
        from mlops_pipeline.ui.render import overview_json

        return JSONResponse(overview_json(overview_of(dataset)), headers={"Cache-Control": "no-store"})

    @app.get("/reports/{relative:path}", dependencies=authorized)
    def report_file(relative: str, dataset: str | None = None) -> Response:
        from mlops_pipeline.storage import open_lake
        from mlops_pipeline.ui.reports import ReportNotFound, ReportPathError, read_report_file

        settings = chosen(dataset)[0]
        try:
            content, media_type = read_report_file(open_lake(settings), settings.monitor.reports_prefix, relative)
        except ReportPathError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except ReportNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
        if media_type.startswith("text/html"):
            # The report's scripts run in an opaque origin: they cannot call the Airflow API as the user.
            headers["Content-Security-Policy"] = "sandbox allow-scripts allow-popups allow-downloads"
        return Response(content, media_type=media_type, headers=headers)

    @app.get("/icon.svg")
    def icon() -> Response:
        return Response(ICON_SVG, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    return app


class LazyApp:
    """An ASGI app that builds the real one on its first request."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = create_app()
        await self._app(scope, receive, send)


class MlopsUIPlugin(AirflowPlugin):
    name = "mlops_ui"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Model operations"}]
    external_views = [
        {
            "name": "Model ops",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative to the Airflow base URL
            "url_route": VIEW_ROUTE,
            "destination": "nav",
            "nav_top_level": True,
            "icon": URL_PREFIX.lstrip("/") + "/icon.svg",
        }
    ]
