"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prefcenter.api.problems import errors, problem
from prefcenter.services import inbound
from prefcenter.services.runtime import Runtime


@get("/healthz", operation_id="healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@get("/readyz", operation_id="readyz", tags=["operations"], responses=errors(503))
async def readyz(rt: NamedDependency[Runtime]) -> Response[Any]:
    """Ready when the database answers, every migration is applied and the policy is loaded."""
    checks: dict[str, str] = {}
    try:
        await rt.store.ping()
        checks["database"] = "ok"
        pending = await rt.store.pending_migrations()
        checks["migrations"] = "ok" if not pending else f"pending: {', '.join(pending)}"
        failing = await rt.store.write_problem()
        checks["writes"] = "ok" if failing is None else f"failing: {failing}"
    except Exception as exc:  # readiness reports any failure as not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["policy"] = "ok" if rt.policy is not None else "not loaded"
    if all(v == "ok" for v in checks.values()):
        return Response({"status": "ready", "checks": checks})
    return problem(503, "not ready", checks=checks)


# Litestar appends "; charset=utf-8" to every text/* media type: name it without the one
# CONTENT_TYPE_LATEST already carries, so the header has one charset.
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@get("/metrics", operation_id="metrics", tags=["operations"], media_type=METRICS_MEDIA_TYPE)
async def metrics(rt: NamedDependency[Runtime]) -> Response[bytes]:
    """Prometheus text exposition."""
    rt.metrics.outbox_depth.set(await rt.store.outbox_due_count())
    rt.metrics.inbound_review_overdue.set(await inbound.overdue_count(rt))
    return Response(generate_latest(rt.metrics.registry), media_type=METRICS_MEDIA_TYPE)
