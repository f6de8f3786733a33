"""The OpenAPI document is the contract the server keeps (issue 10), checked by schemathesis.

One bounded, seeded schemathesis run over every operation of ``/schema/openapi.json`` against the
real app on a real server (examples, coverage, fuzzing and the stateful phase along the document's
links), authenticated with an admin key: no 5xx, every status documented, every answer of the
documented media type and schema (errors as RFC 9457 problems), every request the schema calls
invalid rejected, and no request the schema calls valid rejected by the decoder for a reason the
schema could have said. Its date-time strategy adds the instants schemathesis never draws by itself
(years 0001 and 9999, with offsets that push them past datetime's range in UTC).

Then edge values, field by field, for every operation: each string of a valid request (body fields and
keys, path and query parameters) with a trailing ``\\n``, ``\\r``, ``\\u2028`` and ``\\x85``, and each
instant at the edges of time; each answer is checked by the same schemathesis checks.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.engine import events
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.formats import get_default_format_strategies, unregister_string_format

from prefcenter.api.openapi import LINKS
from prefcenter.config import load_settings
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services import keys, topics
from prefcenter.services.policies import load_policy_file
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore
from tests.conftest import CAMPAIGN, POLICY_FILE, PROFILE, SECRET, TOPICS, prefs_body
from tests.live import serve

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]  # its server is a SqliteStore of its own

@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """importCustomers' body: the generated string as it is (any text is a body the server must answer
    without a 5xx), anything else as one JSON line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode() + b"\n"


# Fixed, so CI runs the same cases every time; set PREFCENTER_CONTRACT_SEED (and _EXAMPLES) to explore.
SEED = int(os.environ.get("PREFCENTER_CONTRACT_SEED", "20261201"))
MAX_EXAMPLES = int(os.environ.get("PREFCENTER_CONTRACT_EXAMPLES", "12"))  # per operation and phase
STATEFUL_MAX_STEPS = 12
LINE_ENDINGS = ("\n", "\r", "\u2028", "\x85")
EDGE_INSTANTS = (
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC
    "9999-12-31T23:59:59.999999-23:59",
    "1899-12-31T23:59:59Z",
    "1900-01-01T00:00:00+00:01",  # just before the earliest accepted instant
    "8999-12-31T23:59:59.999999Z",
)
# Structural rejections: msgspec's words when a value does not have the documented type or shape.
# When the server answers a request that the schema calls valid with one of these, the schema is looser
# than the decoder (a `Topic.names: {}` accepted by the document and rejected by the server). A 400 in
# prefcenter's own words (an IANA zone that does not exist, a topic that does not exist) is a check no
# JSON Schema can state, and the operation's description says it.
STRUCTURAL = ("Expected `", "Object missing required field", "Object contains unknown field", "Invalid enum value")


def _structural(problem: Any) -> list[str]:
    if not isinstance(problem, dict):
        return []
    found = [e for e in problem.get("errors") or [] if isinstance(e, dict)]
    return [f"{e.get('field')}: {e.get('message')}" for e in found if str(e.get("message", "")).startswith(STRUCTURAL)]


@schemathesis.check
def schema_as_strict_as_the_decoder(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the schema calls valid is never rejected for its shape or type."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        problem = response.json()
    except ValueError:
        return None
    if (bad := _structural(problem)) and not _has_invalid_text(case):
        raise AssertionError(f"the schema allows what the decoder rejects: {bad}")
    return None


def _has_invalid_text(case: Any) -> bool:
    """Strings that cannot travel as JSON text (lone surrogates) are rejected before any schema applies."""
    def walk(value: Any) -> bool:
        if isinstance(value, str):
            return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
        if isinstance(value, dict):
            return any(walk(k) or walk(v) for k, v in value.items())
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return False

    return walk(case.body) or walk(case.query) or walk(case.path_parameters)


@dataclass
class Server:
    base: str
    admin: dict[str, str]
    auditor: dict[str, str]
    schema_doc: dict[str, Any] = field(default_factory=dict)


async def _seed(rt: Runtime) -> dict[str, str]:
    await rt.store.open()
    await rt.store.migrate()
    try:
        found = {}
        for role in ("admin", "auditor"):
            _, key = await keys.create_key(rt, role, f"contract-{role}")  # type: ignore[arg-type]
            found[role] = key
        for topic_id, topic in TOPICS.items():
            await topics.put_topic(rt, topic_id, topic)
    finally:
        await rt.store.close()
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = Path(tmp_path_factory.mktemp("contract")) / "prefcenter.db"
    settings = load_settings({}, database_url=f"sqlite:///{db}", secret_key=SECRET, key_cache_seconds=0)
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db),
        pseudonyms=Pseudonymizer(SECRET),
        policy=load_policy_file(POLICY_FILE),
    )
    found = asyncio.run(_seed(rt))
    with serve(rt) as base:
        admin = {"Authorization": f"Bearer {found['admin']}"}
        for path, body in (("/v1/customers/c1", PROFILE), ("/v1/campaigns/camp1", CAMPAIGN)):
            assert httpx.put(base + path, json=body, headers=admin).status_code == 201
        r = httpx.put(base + "/v1/customers/c1/preferences", json=prefs_body(), headers=admin)
        assert r.status_code == 200
        doc = httpx.get(base + "/schema/openapi.json").json()
        yield Server(base, admin, {"Authorization": f"Bearer {found['auditor']}"}, doc)


@pytest.fixture
def edge_instants() -> Iterator[None]:
    """schemathesis draws RFC 3339 instants from years 0000-9999 without offsets near the edges; mix the
    edges in."""
    default = get_default_format_strategies()["date-time"]
    schemathesis.openapi.format("date-time", st.one_of(st.sampled_from(EDGE_INSTANTS), default))
    try:
        yield
    finally:
        unregister_string_format("date-time")


def _config(server: Server) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # One worker: with several, hypothesis parses lambda sources (ast.parse) in parallel
            # threads, which CPython 3.11 answers with "AST constructor recursion depth mismatch".
            "workers": 1,
            "headers": server.admin,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
            "phases": {"stateful": {"max-steps": STATEFUL_MAX_STEPS}},
            "checks": {
                # Replaced by schema_as_strict_as_the_decoder: a 400 for a semantic check that no
                # schema states (a zone that exists, a topic that exists) is the documented answer.
                "positive_data_acceptance": {"enabled": False},
                # litestar's automatic OPTIONS answers list only the methods of the handler registered
                # last on a path (the 405's Allow is right): not part of the API's contract.
                "allow_header_conformance": {"enabled": False},
            },
        }
    )


@dataclass
class RunReport:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    links: int = 0
    seconds: float = 0.0


def _record(report: RunReport, event: Any) -> None:
    if isinstance(event, events.ScenarioFinished):
        recorder = event.recorder
        report.operations.add(recorder.label)
        report.cases += len(recorder.cases)
        report.by_phase[event.phase.value] = report.by_phase.get(event.phase.value, 0) + len(recorder.cases)
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                status = interaction.response.status_code
                report.statuses[status] = report.statuses.get(status, 0) + 1
        for checks in recorder.checks.values():
            for check in checks:
                if check.failure_info is not None:
                    failure = check.failure_info.failure
                    report.failures.append(
                        f"{recorder.label}: {check.name}: {failure.title}\n{failure.message}\n"
                        f"{check.failure_info.code_sample}"
                    )
    elif isinstance(event, events.PhaseStarted) and isinstance(event.payload, events.StatefulPhasePayload):
        report.links = event.payload.transitions_selected
    elif isinstance(event, events.NonFatalError):
        report.errors.append(f"{event.label}: {event.info.format()}")
    elif isinstance(event, events.FatalError):
        report.errors.append(f"fatal: {event.exception!r}")


def test_schemathesis_finds_no_server_error_and_nothing_undocumented(server: Server, edge_instants: None) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(server.base + "/schema/openapi.json", config=_config(server))
    report = RunReport()
    for event in schemathesis.engine.from_schema(schema).execute():
        _record(report, event)
        if isinstance(event, events.EngineFinished):
            report.failures.extend(f"{f.operation}: {f.title}\n{f.message}" for f in event.failures)
    report.seconds = time.monotonic() - started
    print(
        f"\nschemathesis: {len(report.operations)} operations, {report.cases} cases "
        f"{dict(sorted(report.by_phase.items()))}, {report.links} links, "
        f"statuses {dict(sorted(report.statuses.items()))}, {report.seconds:.1f} s"
    )
    documented = {(m.upper(), p) for p, item in server.schema_doc["paths"].items() for m in item if m in {"get", "put", "post", "delete"}}
    assert {label for label in report.operations if " " in label} >= {f"{m} {p}" for m, p in documented}
    assert not report.errors, "\n".join(report.errors)
    assert not report.failures, "\n\n".join(dict.fromkeys(report.failures))
    assert not any(status >= 500 for status in report.statuses)
    assert report.by_phase.get("stateful", 0) > 0 and report.links >= sum(map(len, LINKS.values()))


# --- a sample without a key ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/customers/c1"), ("PUT", "/v1/topics/t1"), ("POST", "/v1/approvals"), ("GET", "/v1/consent-events")],
)
def test_without_a_key_every_v1_operation_is_a_documented_401(server: Server, method: str, path: str) -> None:
    r = httpx.request(method, server.base + path, json={})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    op = next(
        op for p, item in server.schema_doc["paths"].items() for m, op in item.items()
        if m == method.lower() and _matches(p, path)
    )  # fmt: skip
    assert "401" in op["responses"] and "application/problem+json" in op["responses"]["401"]["content"]
    assert op["responses"]["401"]["content"]["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def _matches(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


CREATES = frozenset({"putCustomer", "putTopic", "putCampaign", "putSuppression", "putNotice", "putWebhook"})


def test_the_document_describes_errors_as_rfc9457_problems(server: Server) -> None:
    doc = server.schema_doc
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}
    assert set(doc["components"]["schemas"]["FieldError"]["required"]) == {"field", "message"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            if op.get("security"):
                assert {"401", "403"} <= op["responses"].keys(), (method, path)
            # createLinks' body is optional; importCustomers answers each bad line in its 200 (streamed:
            # no whole-body 400 or 413)
            if op.get("requestBody") and op["operationId"] not in ("createLinks", "importCustomers"):
                assert {"400", "413", "415"} <= op["responses"].keys(), (method, path)
            # an unknown resource in the path is a 404, except where a PUT creates it
            if any(p["in"] == "path" for p in op.get("parameters", [])) and op["operationId"] not in CREATES:
                assert "404" in op["responses"], (method, path)
    assert "status_code" not in str(doc)  # litestar's default {status_code, detail, extra} is gone
    put_customer = doc["paths"]["/v1/customers/{customer_id}"]["put"]
    assert "412" in put_customer["responses"]
    assert any(p["name"] == "If-Match" for p in put_customer["parameters"])
    assert doc["components"]["schemas"]["Topic"]["properties"]["names"]["minProperties"] == 1


# --- edge values, field by field ---------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    operation_id: str
    path_parameters: dict[str, str]
    query: dict[str, str]
    body: Any = None


VALID: list[Request] = [
    Request("putCustomer", {"customer_id": "e1"}, {}, PROFILE),
    Request("getCustomer", {"customer_id": "c1"}, {}),
    Request("putPreferences", {"customer_id": "c1"}, {}, prefs_body(paused_until="2026-12-24T00:00:00+01:00")),
    Request("getDecisions", {"customer_id": "c1"}, {"campaign_id": "camp1"}),
    Request("putTopic", {"topic_id": "edge"}, {}, {"category": "marketing", "names": {"en": "Edge"}, "descriptions": {"en": "d"}}),
    Request("getTopic", {"topic_id": "promotions"}, {}),
    Request("putCampaign", {"campaign_id": "edge"}, {}, {**CAMPAIGN, "send_by": "2026-12-30T00:00:00Z"}),
    Request("getCampaign", {"campaign_id": "camp1"}, {}),
    Request("approve", {}, {}, {"campaign_id": "camp1", "customer_ids": ["c1"], "at": "2026-11-22T10:00:00Z", "dry_run": True}),
    Request("sendCampaign", {"campaign_id": "camp1"}, {}, {"customer_ids": ["c1"]}),
    Request("createLinks", {"customer_id": "c1"}, {}, {"topic": "promotions"}),
    Request("inboundSms", {}, {}, {"from": "+48600100201", "text": "HELP"}),
    Request("inboundEmailEvent", {}, {}, {"type": "bounce", "address": "edge@example.org", "permanent": False}),
    Request("listSuppressions", {}, {"channel": "email"}),
    Request("listConsentEvents", {}, {"customer_id": "c1", "since": "2026-01-01T00:00:00Z", "until": "2027-01-01T00:00:00+01:00"}),
    Request("exportConsentEvents", {}, {"customer_id": "c1", "since": "2026-01-01T00:00:00Z", "format": "jsonl"}),
    Request("verifyConsentEvents", {}, {}),
    Request("getConsentReceipt", {"customer_id": "c1"}, {}),
    Request("getConsentState", {"customer_id": "c1"}, {"at": "2026-11-22T09:00:00Z"}),
    Request("getTrace", {"campaign_id": "camp1", "customer_id": "c1"}, {}),
    Request("putNotice", {"notice_version": "edge-1"}, {}, {"texts": {"en": "We send offers. Withdraw at any time.", "fa": "متن"}}),
    Request("getNotice", {"notice_version": "edge-1"}, {}),
    Request("listCustomers", {}, {"topic": "promotions", "channel": "email", "updated_since": "2026-01-01T00:00:00+01:00", "limit": "10"}),
    Request("listCampaigns", {}, {"limit": "10"}),
    Request("listCampaignMessages", {"campaign_id": "camp1"}, {"status": "queued", "limit": "10"}),
    Request("listCustomerMessages", {"customer_id": "c1"}, {"limit": "10"}),
    Request("putWebhook", {"webhook_id": "edge"}, {}, {"url": "https://crm.example/hooks", "secret": "whsec_" + "A" * 32, "sources": ["api"]}),
    Request("getWebhook", {"webhook_id": "edge"}, {}),
    Request("listWebhookDeliveries", {"webhook_id": "edge"}, {"limit": "10"}),
]  # fmt: skip
INSTANT_FIELDS = frozenset({"paused_until", "send_by", "at", "since", "until"})


def _strings(value: Any, path: tuple[Any, ...] = (), *, keys: bool = True) -> Iterator[tuple[tuple[Any, ...], bool]]:
    """Paths of every string in ``value`` (and, with ``keys``, of every key): (path, is_key)."""
    if isinstance(value, str):
        yield path, False
    elif isinstance(value, dict):
        for k, v in value.items():
            if keys:
                yield (*path, k), True
            yield from _strings(v, (*path, k), keys=keys)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*path, i), keys=keys)


def _replace(value: Any, path: tuple[Any, ...], is_key: bool, make: Any) -> Any:
    out = copy.deepcopy(value)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if is_key:
        parent[make(last)] = parent.pop(last)
    else:
        parent[last] = make(parent[last])
    return out


def _variants(request: Request) -> Iterator[tuple[str, Request]]:
    for where in ("path_parameters", "query", "body"):
        value = getattr(request, where)
        for path, is_key in _strings(value, keys=where == "body"):
            name = ".".join(str(p) for p in path)
            leaf = path[-1]
            for ending in LINE_ENDINGS:
                yield (f"{where}:{name}{'(key)' if is_key else ''}+{ending!r}",
                       _with(request, where, _replace(value, path, is_key, lambda s, e=ending: s + e)))  # fmt: skip
            if not is_key and leaf in INSTANT_FIELDS:
                for instant in EDGE_INSTANTS:
                    yield (f"{where}:{name}={instant}",
                           _with(request, where, _replace(value, path, False, lambda _, i=instant: i)))  # fmt: skip


def _with(request: Request, where: str, value: Any) -> Request:
    fields = {"path_parameters": request.path_parameters, "query": request.query, "body": request.body}
    fields[where] = value
    return Request(request.operation_id, **fields)


class Validity:
    """Whether a request's parts satisfy the document's schemas (jsonschema-rs, as schemathesis uses)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def _valid(self, schema: dict[str, Any], value: Any) -> bool:
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "components": self.doc["components"]}
        return bool(jsonschema_rs.validator_for(root).is_valid(value))

    def __call__(self, op: dict[str, Any], request: Request) -> bool:
        for param in op.get("parameters", []):
            source = request.path_parameters if param["in"] == "path" else request.query
            name = param["name"]
            if param["in"] in ("path", "query") and name in source and not self._valid(param["schema"], source[name]):
                return False
        if request.body is not None:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            return self._valid(schema, request.body)
        return True


def _case(operation: Any, request: Request) -> Any:
    kwargs: dict[str, Any] = {"path_parameters": request.path_parameters, "query": request.query or None}
    if request.body is not None:
        kwargs["body"] = request.body
    return operation.Case(**kwargs)


def test_edge_values_of_every_field_are_answered_as_documented(server: Server) -> None:
    """A trailing line break on every string (values, keys, path and query parameters) and every instant
    at the edges of time: never a 5xx, always a documented status, media type and schema; a 4xx whenever
    the schema calls the request invalid, and never a structural rejection when it calls it valid."""
    schema = schemathesis.openapi.from_url(server.base + "/schema/openapi.json", config=_config(server))
    ops = {op["operationId"]: (p, m, op) for p, item in server.schema_doc["paths"].items() for m, op in item.items()}
    validity = Validity(server.schema_doc)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    # importCustomers: its body is NDJSON lines judged one by one in a 200 (tests/api/test_import.py)
    assert {r.operation_id for r in VALID} >= {o for o, (_, _, op) in ops.items() if op.get("parameters") or op.get("requestBody")} - {"eraseCustomer", "deleteTopic", "getPreferences", "putSuppression", "deleteSuppression", "deleteWebhook", "importCustomers"}
    problems: list[str] = []
    sent = 0
    statuses: dict[int, int] = {}
    for base_request in VALID:
        path, method, op = ops[base_request.operation_id]
        operation = schema[path][method.upper()]
        r = _case(operation, base_request).call(base_url=server.base, headers=server.admin)
        assert r.status_code < 300, (base_request.operation_id, r.status_code, r.text)
        for label, request in _variants(base_request):
            case = _case(operation, request)
            response = case.call(base_url=server.base, headers=server.admin)
            sent += 1
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            where = f"{base_request.operation_id} {label}: {response.status_code} {response.text[:300]}"
            try:
                case.validate_response(response, checks=checks)
            except Exception as exc:  # schemathesis raises a group of failures
                problems.append(f"{where}\n{exc}")
                continue
            if not validity(op, request):
                if not 400 <= response.status_code < 500:
                    problems.append(f"{where}: the schema calls this invalid but the server accepted it")
            elif response.status_code == 400 and _structural(response.json()):
                problems.append(f"{where}: the schema calls this valid but the decoder rejected it")
    print(f"\nedge values: {sent} requests over {len(VALID)} operations, statuses {dict(sorted(statuses.items()))}")
    assert not problems, "\n\n".join(problems)
