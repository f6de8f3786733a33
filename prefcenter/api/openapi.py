"""The OpenAPI document, as strict as the server: every schema, status, media type and header it answers.

litestar builds the document from the route handlers; :func:`complete_document` then makes it say
exactly what the server does (issue 10):

- **Schemas from msgspec.** Request and response bodies are decoded and encoded by msgspec, so their
  component schemas are msgspec's own JSON Schema of the same Structs
  (:func:`msgspec.json.schema_components`). litestar's translation drops constraints that msgspec
  enforces: lengths of dicts (``Topic.names`` must not be empty), constraints on dict keys and values
  and on list items (``topics`` entries are topic ids), ``additionalProperties: false`` of Structs that
  forbid unknown fields.
- **Checks done after decoding**, where the schema can say them: the id grammars of path and query
  parameters, channel enums, date-time query parameters, and :data:`FIELD_CONSTRAINTS` on Structs that
  live in the service layer. Checks no schema can say (an IANA zone that exists, a topic that exists,
  an instant between 1900 and 9000) stay 400s with field errors, as each operation's description says.
- **Errors** (``errors()`` in problems.py, on every route decorator) are ``application/problem+json``;
  here 503 gains ``Retry-After``.
- **Headers and media types**: the strong ``ETag`` of customers and preferences, the export's JSONL and
  CSV, the optional body of ``createLinks``.
- **Links** between operations (create, then read, replace or delete by the same id), which
  schemathesis' stateful phase follows.
"""

from __future__ import annotations

import copy
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import (
    Link,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    RequestBody,
    Schema,
)
from litestar.routes import HTTPRoute

from prefcenter.domain.model import CHANNELS, CUSTOMER_ID_RE, TOPIC_ID_RE
from prefcenter.services.approvals import MAX_IDS
from prefcenter.services.lists import MAX_LIMIT, MESSAGE_STATUSES
from prefcenter.services.notices import NOTICE_VERSION_RE

REF_TEMPLATE = "#/components/schemas/{name}"

CUSTOMER_ID: dict[str, Any] = {
    "type": "string",
    "pattern": CUSTOMER_ID_RE.pattern,
    "description": "1-128 characters of A-Za-z0-9._:@-",
}
TOPIC_ID: dict[str, Any] = {
    "type": "string",
    "pattern": TOPIC_ID_RE.pattern,
    "description": "1-64 characters of a-z0-9_-, starting with a letter or digit",
}
CHANNEL: dict[str, Any] = {"type": "string", "enum": list(CHANNELS)}
NOTICE_VERSION: dict[str, Any] = {
    "type": "string",
    "pattern": NOTICE_VERSION_RE.pattern,
    "description": "1-64 characters of A-Za-z0-9._:-",
}
ADDRESS: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 320}
INSTANT: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with an offset, between 1900-01-01T00:00:00Z and 9000-01-01T00:00:00Z",
}
ID_LIST: dict[str, Any] = {
    "type": "array",
    "items": CUSTOMER_ID,
    "uniqueItems": True,
    "maxItems": MAX_IDS,
    "description": f"At most {MAX_IDS:,} distinct customer ids (more: 413)",
}

#: Path parameters, by name: every one is checked by the operations that take it.
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "customer_id": CUSTOMER_ID,
    "topic_id": TOPIC_ID,
    "campaign_id": TOPIC_ID,  # campaign ids share the topic id grammar (API.md)
    "channel": CHANNEL,
    "address": ADDRESS,
    "notice_version": NOTICE_VERSION,
}
#: Query parameters, by name, that are checked wherever they appear (a ``campaign_id`` filter is not).
QUERY_PARAMETERS: dict[str, dict[str, Any]] = {
    "customer_id": CUSTOMER_ID,
    "channel": CHANNEL,
    "since": INSTANT,
    "until": INSTANT,
}
#: Checks the services make on fields of their own Structs: (component, property) -> schema keywords.
# customer_ids are checked by services.approvals.check_ids in one regex pass over the joined ids (a
# msgspec pattern per item would cost ~5 ms per 10,000), and more than MAX_IDS is a 413, not a 400:
# so their constraints are written into the document here rather than into the Struct.
FIELD_CONSTRAINTS: dict[tuple[str, str], dict[str, Any]] = {
    ("ApprovalRequest", "customer_ids"): ID_LIST,
    ("SendRequest", "customer_ids"): ID_LIST,
}
ETAG_HEADER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description="Strong entity tag of the representation, for `If-Match`",
    required=True,
)
RETRY_AFTER_HEADER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.INTEGER),
    description="Seconds after which the same request may succeed (sent when a write failed)",
    required=False,
)
#: Operations whose 200/201 carry an ETag.
ETAG_OPERATIONS = frozenset({"getCustomer", "putCustomer", "getPreferences", "putPreferences"})
#: The lists' query parameters (API.md "Lists", "Message status"), by (operation id, name): they win
#: over QUERY_PARAMETERS (``channel=none`` lists the customers without a channel).
LIST_LIMIT: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}
LIST_PARAMETERS: dict[tuple[str, str], dict[str, Any]] = {
    **{
        (op, "limit"): LIST_LIMIT
        for op in ("listCustomers", "listCampaigns", "listCampaignMessages", "listCustomerMessages")
    },
    ("listCustomers", "topic"): TOPIC_ID,
    ("listCustomers", "channel"): {"type": "string", "enum": [*CHANNELS, "none"]},
    ("listCustomers", "updated_since"): INSTANT,
    ("listCampaignMessages", "status"): {"type": "string", "enum": list(MESSAGE_STATUSES)},
    ("getDecisions", "limit"): {k: v for k, v in LIST_LIMIT.items() if k != "default"},
    ("listSuppressions", "limit"): {k: v for k, v in LIST_LIMIT.items() if k != "default"},
}
NEXT_LINK_HEADER = OpenAPIHeader(
    schema=Schema(type=OpenAPIType.STRING),
    description='RFC 8288 `<...>; rel="next"`: the next page (only with `limit`; absent on the last page)',
    required=False,
)
NEXT_LINK_OPERATIONS = frozenset({"getDecisions", "listSuppressions"})


def _links(*pairs: tuple[str, dict[str, str]]) -> dict[str, Link]:
    return {target: Link(operation_id=target, parameters=params) for target, params in pairs}


_CUSTOMER = {"customer_id": "$request.path.customer_id"}
_TOPIC = {"topic_id": "$request.path.topic_id"}
_CAMPAIGN = {"campaign_id": "$request.path.campaign_id"}
_SUPPRESSION = {"channel": "$request.path.channel", "address": "$request.path.address"}
#: operationId -> the operations that a success makes meaningful, with the parameters they take from it.
LINKS: dict[str, dict[str, Link]] = {
    "putCustomer": _links(
        ("getCustomer", _CUSTOMER),
        ("getPreferences", _CUSTOMER),
        ("putPreferences", _CUSTOMER),
        ("getDecisions", _CUSTOMER),
        ("getConsentReceipt", _CUSTOMER),
        ("createLinks", _CUSTOMER),
        ("eraseCustomer", _CUSTOMER),
    ),
    "putPreferences": _links(("getPreferences", _CUSTOMER), ("getCustomer", _CUSTOMER)),
    "putTopic": _links(("getTopic", _TOPIC), ("deleteTopic", _TOPIC)),
    "putCampaign": _links(("getCampaign", _CAMPAIGN), ("sendCampaign", _CAMPAIGN)),
    "putSuppression": _links(("deleteSuppression", _SUPPRESSION)),
    "putNotice": _links(("getNotice", {"notice_version": "$request.path.notice_version"})),
}


def created(container: Any) -> dict[int, ResponseSpec]:
    """The 201 of a create-or-replace ``PUT`` (whose 200 is the handler's own status)."""
    return {201: ResponseSpec(data_container=container, generate_examples=False, description="Created")}


@dataclass
class RawSchema(Schema):
    """A component schema given as JSON Schema (msgspec's), rendered as it is."""

    raw: dict[str, Any] = field(default_factory=dict)

    def to_schema(self) -> dict[str, Any]:
        return copy.deepcopy(self.raw)


def _structs(annotation: Any, found: set[type]) -> None:
    """Every msgspec Struct named in ``annotation`` (``Response[X]``, ``X | None``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        found.add(annotation)
        return
    origin = typing.get_origin(annotation)
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            _structs(arg, found)


def _handler_structs(app: Litestar) -> set[type]:
    found: set[type] = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            signature = handler.parsed_fn_signature
            if (data := signature.parameters.get("data")) is not None:
                _structs(data.annotation, found)
            _structs(signature.return_type.annotation, found)
            for spec in (handler.responses or {}).values():
                _structs(spec.data_container, found)
    return found


def _component_schemas(app: Litestar) -> dict[str, dict[str, Any]]:
    structs = sorted(_handler_structs(app), key=lambda t: (t.__module__, t.__qualname__))
    _, components = msgspec.json.schema_components(structs, ref_template=REF_TEMPLATE)
    for (name, prop), constraint in FIELD_CONSTRAINTS.items():
        schema = components.get(name)
        if schema is not None and prop in schema.get("properties", {}):
            schema["properties"][prop] = {**schema["properties"][prop], **constraint}
    return components


def _operations(app: Litestar) -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    for path_item in (app.openapi_schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            op: Operation | None = getattr(path_item, method, None)
            if op is not None and op.operation_id:
                ops[op.operation_id] = op
    return ops


def _parameters(op: Operation, operation_id: str) -> None:
    for param in op.parameters or []:
        if not isinstance(param, Parameter):
            continue
        if param.param_in == "query" and (raw := LIST_PARAMETERS.get((operation_id, param.name))):
            param.schema = RawSchema(raw=raw)
            continue
        table = PATH_PARAMETERS if param.param_in == "path" else QUERY_PARAMETERS
        if param.param_in in ("path", "query") and param.name in table:
            param.schema = RawSchema(raw=table[param.name])


def _response(op: Operation, status: str) -> OpenAPIResponse | None:
    response = (op.responses or {}).get(status)
    return response if isinstance(response, OpenAPIResponse) else None


def complete_document(app: Litestar) -> None:
    """Make ``app``'s OpenAPI document describe exactly what the server accepts and answers (see the
    module's docstring). Call once, after the app is built and before the document is first served."""
    openapi = app.openapi_schema
    schemas = openapi.components.schemas if openapi.components.schemas is not None else {}
    for name, raw in _component_schemas(app).items():
        schemas[name] = RawSchema(raw=raw)
    openapi.components.schemas = schemas
    for operation_id, op in _operations(app).items():
        if op.responses is not None:
            op.responses = dict(sorted(op.responses.items()))
        _parameters(op, operation_id)
        if operation_id in NEXT_LINK_OPERATIONS and (listed := _response(op, "200")) is not None:
            listed.headers = {**(listed.headers or {}), "Link": NEXT_LINK_HEADER}
        if operation_id in ETAG_OPERATIONS:
            for status in ("200", "201"):
                if (response := _response(op, status)) is not None:
                    response.headers = {**(response.headers or {}), "ETag": ETAG_HEADER}
        if (unavailable := _response(op, "503")) is not None and op.responses is not None:
            unavailable.headers = {**(unavailable.headers or {}), "Retry-After": RETRY_AFTER_HEADER}
        if (links := LINKS.get(operation_id)) is not None:
            for status in ("200", "201"):
                if (response := _response(op, status)) is not None:
                    response.links = dict(links)
        if operation_id == "exportConsentEvents" and (ok := _response(op, "200")) is not None:
            text = Schema(type=OpenAPIType.STRING)
            ok.content = {
                "application/x-ndjson": OpenAPIMediaType(schema=text),
                "text/csv": OpenAPIMediaType(schema=text),
            }
        if operation_id == "importCustomers":
            # streamed, so litestar cannot see a body type: one JSON object a line (API.md "Bulk import")
            op.request_body = RequestBody(
                required=True,
                description="One JSON object a line: customer_id, profile, and optionally preferences "
                "with provenance. A bad line is answered in `errors`, never as a 400 of the whole body.",
                content={
                    "application/x-ndjson": OpenAPIMediaType(schema=Schema())
                },  # any text: lines judged one by one
            )
        if operation_id == "createLinks" and op.request_body is not None:
            op.request_body.required = False  # type: ignore[union-attr]


__all__ = ["FIELD_CONSTRAINTS", "LINKS", "complete_document", "created"]
