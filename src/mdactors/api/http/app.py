"""The HTTP application (quart-trio): infrastructure, health, readiness, metrics.

Routes live in blueprints (:mod:`mdactors.api.http.rest`, :mod:`mdactors.api.http.market_ui`);
this module wires CORS, the error shape, RED metrics and the OpenAPI document
around them.
"""

from __future__ import annotations

import functools
import re
import time

from quart import Response, g, request
from quart_schema import QuartSchema, RequestSchemaValidationError, hide
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from mdactors import __version__
from mdactors.api import console
from mdactors.api.admin import chaos, debug
from mdactors.api.admin.guard import register_admin
from mdactors.api.binance import futures_rest as binance_futures_rest
from mdactors.api.binance import rest as binance_rest
from mdactors.api.codec import rfc3339
from mdactors.api.connect import routes as connect
from mdactors.api.context import ApiContext
from mdactors.api.http import catalogue, listeners, market_ui, rest
from mdactors.api.http.errors import HTTP_ERRORS, ApiError, validation_message
from mdactors.api.http.readiness import dependency_checks
from mdactors.api.http.web import json_response
from mdactors.domain.symbols import SymbolError
from mdactors.engine.market import UnknownSymbol

__all__ = ["MAX_BODY_BYTES", "create_app"]

MAX_BODY_BYTES = 1024 * 1024
#: Request headers a browser may send, per protocol served on this port (REST with the
#: old service's client headers, SSE's resume, Connect's and gRPC-Web's own); a protocol
#: adds its row here when it is served, so the preflight never advertises one that is not.
_CORS_ALLOWED = {
    "rest": ("Authorization", "Content-Type", "X-Client", "X-Client-Version"),
    "sse": ("Last-Event-ID",),
    "connect": (
        "Connect-Protocol-Version",
        "Connect-Timeout-Ms",
        "Connect-Accept-Encoding",
        "Connect-Content-Encoding",
    ),
    "grpc-web": ("X-Grpc-Web", "X-User-Agent", "Grpc-Timeout"),
}
#: Response headers browser code may read, per protocol (gRPC-Web's status is in
#: headers when a call fails before its first message).
_CORS_EXPOSED = {
    "connect": ("Connect-Protocol-Version", "Connect-Content-Encoding", "Content-Encoding"),
    "grpc-web": ("Grpc-Status", "Grpc-Message"),
}
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": ", ".join(h for row in _CORS_ALLOWED.values() for h in row),
    "Access-Control-Expose-Headers": ", ".join(h for row in _CORS_EXPOSED.values() for h in row),
    "Access-Control-Max-Age": "7200",
}
_RULE_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@functools.cache
def route_label(rule: str) -> str:
    """A URL rule in the old service's form, which its dashboards select on.

    ``/api/v1/prices/<symbol>/current`` → ``/api/v1/prices/:symbol/current``
    (a converter such as ``<path:symbol>`` is dropped as well).
    """
    return _RULE_VARIABLE.sub(r":\1", rule)


def _error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)


def create_app(ctx: ApiContext) -> QuartTrio:
    """Build the HTTP application over the running engine."""
    app = QuartTrio("mdactors")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["RESPONSE_TIMEOUT"] = ctx.settings.request_timeout
    app.config["BODY_TIMEOUT"] = ctx.settings.request_timeout
    app.extensions["mdactors"] = ctx
    QuartSchema(
        app,
        info={"title": "mdactors", "version": __version__},
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    settings = ctx.settings

    @app.before_request
    async def start_request() -> Response | None:
        g.started = time.perf_counter()
        if request.method == "OPTIONS":
            return Response(b"", status=204)
        return None

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers.update(_CORS_HEADERS)
        rule = request.url_rule
        route = route_label(rule.rule) if rule is not None else "unknown"
        started = getattr(g, "started", None)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        ctx.metrics.observe_request(request.method, route, response.status_code, elapsed)
        return response

    @app.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return _error_response(error)

    @app.errorhandler(SymbolError)
    @app.errorhandler(UnknownSymbol)
    async def engine_error(error: Exception) -> Response:
        return _error_response(HTTP_ERRORS(error))

    @app.errorhandler(RequestSchemaValidationError)
    async def invalid_query(error: RequestSchemaValidationError) -> Response:
        name, message = validation_message(error, "query")
        return _error_response(
            ApiError(400, "invalid_parameter", f"{name}: {message}", parameter=name)
        )

    @app.errorhandler(UnicodeDecodeError)
    async def undecodable_body(error: UnicodeDecodeError) -> Response:
        return _error_response(
            ApiError(400, "invalid_body", "the request body is not text in its declared charset")
        )

    @app.errorhandler(RecursionError)
    async def too_deep_body(error: RecursionError) -> Response:
        return _error_response(
            ApiError(400, "invalid_body", "the request body is nested too deeply")
        )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        names = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        message = {
            404: f"no route for {request.method} {request.path[:200]}",
            405: f"method {request.method} not allowed on {request.path[:200]}",
        }.get(code, error.description or error.name)
        # Keep the exception's own headers (405's Allow, RFC 9110 §15.5.6),
        # but not its HTML Content-Type: the body is our JSON.
        headers = {
            name: value for name, value in error.get_headers() if name.lower() != "content-type"
        }
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return _error_response(
            ApiError(code, names.get(code, "http_error"), message, headers=headers)
        )

    @app.errorhandler(Exception)
    async def internal_error(error: Exception) -> Response:
        app.logger.exception("unhandled error", exc_info=error)
        return _error_response(ApiError(500, "internal", "internal server error"))

    @app.route("/api/v1/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        """Liveness: 200 while the process runs; 503 once a supervised task is down for good."""
        lifecycle = ctx.lifecycle
        if not lifecycle.healthy:
            status = "unhealthy"
        elif lifecycle.drain_requested.is_set():
            status = "draining"
        else:
            status = "healthy"
        body: dict[str, object] = {
            "status": status,
            "service": settings.service_name,
            "instance": settings.instance_name,
            "version": settings.service_version,
            "environment": settings.environment,
            "timestamp": rfc3339(time.time_ns()),
        }
        if lifecycle.failures:
            body["failures"] = lifecycle.failures
        halted = ctx.market.halted()
        if halted:
            body["halted_symbols"] = halted
        return json_response(body, 200 if lifecycle.healthy else 503)

    @app.get("/api/v1/ready")
    async def ready() -> Response:
        """Readiness with dependency checks: 200 while serving, 503 otherwise."""
        now_ns = time.time_ns()
        checks = dependency_checks(ctx, now_ns)
        serving = ctx.lifecycle.serving and ctx.lifecycle.healthy
        return json_response(
            {
                "status": "ready" if serving else ctx.lifecycle.phase.value,
                "service": settings.service_name,
                "instance": settings.instance_name,
                "checks": checks,
                "timestamp": rfc3339(now_ns),
            },
            200 if serving else 503,
        )

    @app.get("/metrics")
    @hide
    async def metrics() -> Response:
        """Prometheus text exposition."""
        body = await ctx.metrics.render()
        return Response(body, content_type="text/plain; version=0.0.4; charset=utf-8")

    app.register_blueprint(rest.blueprint)
    app.register_blueprint(market_ui.blueprint)
    app.register_blueprint(catalogue.blueprint)
    app.register_blueprint(connect.blueprint)
    app.register_blueprint(binance_rest.blueprint)
    app.register_blueprint(binance_futures_rest.blueprint)
    app.register_blueprint(listeners.blueprint)
    app.register_blueprint(console.blueprint)
    if settings.chaos_enabled:
        register_admin(app, chaos.blueprint, debug.blueprint)
    return app
