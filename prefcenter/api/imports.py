"""``POST /v1/customers/import``: bulk import of customers and preferences, NDJSON, streamed."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from prefcenter.api.auth import ALL, WRITE, access, current_key
from prefcenter.api.customers import CustomerController
from prefcenter.api.problems import AUTH_ERRORS, errors, json_body, problem
from prefcenter.domain.model import Profile
from prefcenter.services import imports
from prefcenter.services.imports import ImportResult
from prefcenter.services.runtime import Runtime

NDJSON = "application/x-ndjson"


async def ndjson_body(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``before_request``: a body of another media type is a 415, before anything is read."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != NDJSON:
        return problem(415, f"The body must be {NDJSON}: one JSON object a line.")
    return None


@post(
    "/v1/customers/import",
    operation_id="importCustomers",
    tags=["customers"],
    status_code=HTTP_200_OK,
    before_request=ndjson_body,
    request_max_body_size=None,  # streamed line by line: any size, constant memory
    responses=errors(*AUTH_ERRORS, 415, 503),
    **access(*WRITE),
)
async def import_customers(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> ImportResult:
    """Import customers from an `application/x-ndjson` body, one object a line:
    `{"customer_id", "profile": {as putCustomer}, "preferences": {as putPreferences, without
    provenance}, "provenance": {...}}`; `preferences` and `provenance` are optional together (a new
    customer without them has no channel and no topics; an existing one keeps theirs).

    Each line is validated as the single endpoints validate it (`provenance.source` `admin` needs an
    admin key) and written whole or not at all; a bad line is counted in `rejected`, listed in `errors`
    (line numbers from 1, at most 1,000 errors; `field` `""`: the line is not a JSON object) and
    never fails the other lines. A line equal to the stored state changes nothing and writes no event.
    Blank lines are skipped. Good lines are written in transactions of 2,000 lines: a 503 means the
    database stopped taking writes mid-way; the chunks before it stay written, and importing the same
    body again finishes the work.
    """
    return await imports.import_ndjson(rt, request.stream(), caller_role=current_key(request).role)


# The fixed path above would shadow the customer whose id is "import" (a valid id): litestar matches
# the static path first and answers 405 for its other methods. These three keep that customer's profile
# reachable, with exactly the handlers of /v1/customers/{customer_id} (not in the schema: the document
# already describes them under the parameterised path). Its sub-paths (/preferences, ...) route normally.
IMPORT_ID = "import"
_customer = CustomerController


@put(
    "/v1/customers/import",
    include_in_schema=False,
    status_code=HTTP_200_OK,
    before_request=json_body,
    **access(*WRITE),
)
async def put_customer_named_import(
    rt: NamedDependency[Runtime],
    data: JSONBody[Profile],
    if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
) -> Response[Profile]:
    response: Response[Profile] = await _customer.put_customer.fn(None, rt, IMPORT_ID, data, if_match)
    return response


@get("/v1/customers/import", include_in_schema=False, **access(*ALL))
async def get_customer_named_import(rt: NamedDependency[Runtime]) -> Response[Profile]:
    response: Response[Profile] = await _customer.get_customer.fn(None, rt, IMPORT_ID)
    return response


@delete("/v1/customers/import", include_in_schema=False, status_code=HTTP_204_NO_CONTENT, **access("admin"))
async def erase_customer_named_import(request: Request[Any, Any, Any], rt: NamedDependency[Runtime]) -> None:
    await _customer.erase_customer.fn(None, request, rt, IMPORT_ID)


IMPORT_HANDLERS = [
    import_customers,
    put_customer_named_import,
    get_customer_named_import,
    erase_customer_named_import,
]
