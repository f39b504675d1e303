"""The operator console: static files served at ``/console``, and what the page needs to start.

The page (``static/``: HTML, CSS, one script and the vendored TradingView
Lightweight Charts build) is package data: no build step, no Node.js and no
internet for whoever runs the service. It talks to the service only through
public, documented paths: the SSE price stream and the WebSocket protocol
for live data, REST for history and correlations, ``/api/v1/listeners``,
and the chaos API (with the admin token when one is set).

``GET /console/config`` tells the page what it cannot find out alone: the
bound WebSocket port, the symbols, and whether chaos controls exist here
(and why not) and need a token. It never reveals the token.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

from mdactors import __version__
from mdactors.api.http.web import context, json_response

__all__ = ["CHART_INTERVALS", "STATIC", "blueprint"]

STATIC = Path(__file__).parent / "static"
CHART_INTERVALS = ("1m", "5m", "1h")

blueprint = Blueprint(
    "console", __name__, url_prefix="/console", static_folder="static", static_url_path="/static"
)

_SECURITY_HEADERS = {
    # The page holds the admin token in sessionStorage: no script but ours, no framing.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@blueprint.after_request
async def console_headers(response: Response) -> Response:
    response.headers.update(_SECURITY_HEADERS)
    if "no-store" not in response.headers.get("Cache-Control", ""):
        # Revalidate (ETag) on every load: an upgraded package's files are used at once.
        response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("")
@blueprint.get("/")
async def page() -> Response:
    """The console page."""
    return await send_from_directory(STATIC, "index.html")


def _chaos_state() -> dict[str, object]:
    ctx = context()
    settings = ctx.settings
    if not settings.chaos_enabled:
        return {
            "enabled": False,
            "reason": "the chaos API is disabled on this instance (CHAOS_ENABLED=false)",
            "token_required": False,
        }
    return {
        "enabled": True,
        "reason": ctx.scenarios.elsewhere,
        "token_required": bool(settings.admin_token),
    }


@blueprint.get("/config")
async def config() -> Response:
    """What the page needs to start: ports, symbols, chart intervals, chaos availability."""
    ctx = context()
    settings = ctx.settings
    return json_response(
        {
            "service": settings.service_name,
            "instance": settings.instance_name,
            "version": __version__,
            "ws_port": ctx.ports.get("ws", settings.ws_port),
            "symbols": ctx.market.symbols,
            "intervals": list(CHART_INTERVALS),
            "chaos": _chaos_state(),
        },
        headers={"Cache-Control": "no-store"},
    )
