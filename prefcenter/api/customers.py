"""``/v1/customers``: profiles, preferences, erasure and consent receipts."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from prefcenter.api.auth import ALL, READ_AUDIT, WRITE, access, current_key
from prefcenter.api.lists import After, Limit
from prefcenter.api.openapi import created
from prefcenter.api.params import parse_instant
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.domain.model import Preferences, PreferencesWrite, Profile, check_customer_id
from prefcenter.services import approvals, consent, customers, lists
from prefcenter.services.consent_state import ConsentStateAnswer, consent_state
from prefcenter.services.runtime import Runtime


class CustomerController(Controller):
    path = "/v1/customers/{customer_id:str}"
    tags = ["customers"]

    @put(
        "",
        operation_id="putCustomer",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses={**created(Profile), **errors(*AUTH_ERRORS, *BODY_ERRORS, 412, 503)},
        **access(*WRITE),
    )
    async def put_customer(
        self,
        rt: NamedDependency[Runtime],
        customer_id: FromPath[str],
        data: JSONBody[Profile],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[Profile]:
        """Create or replace a customer's profile (201 when created, 200 when replaced), with a strong
        ETag; with a stale If-Match (or one when there is no customer): 412, and nothing changes.

        Replacing the profile never changes preferences. Email addresses and E.164 numbers are validated
        and normalised; the stored form is returned. The timezone must be an IANA name, the locale BCP 47
        and the country ISO 3166-1 alpha-2 (400 naming the field otherwise).
        """
        customer, was_created = await customers.put_customer(rt, customer_id, data, if_match=if_match)
        return Response(
            customer.profile,
            status_code=HTTP_201_CREATED if was_created else HTTP_200_OK,
            headers={"ETag": customers.profile_etag(customer.profile)},
        )

    @get("", operation_id="getCustomer", responses=errors(400, *AUTH_ERRORS, 404), **access(*ALL))
    async def get_customer(
        self, rt: NamedDependency[Runtime], customer_id: FromPath[str]
    ) -> Response[Profile]:
        """The customer's profile, with a strong ETag for If-Match."""
        profile = (await customers.get_customer(rt, customer_id)).profile
        return Response(profile, headers={"ETag": customers.profile_etag(profile)})

    @delete(
        "",
        operation_id="eraseCustomer",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(400, *AUTH_ERRORS, 404, 503),
        **access("admin"),
    )
    async def erase_customer(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], customer_id: FromPath[str]
    ) -> None:
        """Erase the person (GDPR Art. 17): profile, contacts, preferences and everything personal go;
        ledger events keep only the pseudonym, and the ledger still verifies."""
        await customers.erase_customer(rt, customer_id, api_key_id=current_key(request).id)

    @get(
        "/preferences",
        operation_id="getPreferences",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*ALL),
    )
    async def get_preferences(
        self, rt: NamedDependency[Runtime], customer_id: FromPath[str]
    ) -> Response[Preferences]:
        """The customer's preferences, with a strong ETag for If-Match."""
        customer = await customers.get_customer(rt, customer_id)
        prefs = customer.preferences
        return Response(prefs, headers={"ETag": customers.preferences_etag(prefs)})

    @put(
        "/preferences",
        operation_id="putPreferences",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses=errors(*AUTH_ERRORS, *BODY_ERRORS, 404, 412, 503),
        **access(*WRITE),
    )
    async def put_preferences(
        self,
        request: Request[Any, Any, Any],
        rt: NamedDependency[Runtime],
        customer_id: FromPath[str],
        data: JSONBody[PreferencesWrite],
        if_match: Annotated[str | None, HeaderParameter(name="If-Match", required=False)] = None,
    ) -> Response[Preferences]:
        """Replace the preferences (every field required, provenance included). A stale If-Match: 412.
        ``topics`` must be marketing topics that exist; ``provenance.source`` ``admin`` needs an admin
        key (403).

        Each change writes its consent events in the same transaction; a write that changes nothing
        writes no event.
        """
        prefs, etag, _ = await customers.put_preferences(
            rt, customer_id, data, if_match=if_match, caller_role=current_key(request).role
        )
        return Response(prefs, headers={"ETag": etag})

    @get("/decisions", operation_id="getDecisions", responses=errors(400, *AUTH_ERRORS, 404), **access(*ALL))
    async def decisions(
        self,
        rt: NamedDependency[Runtime],
        customer_id: FromPath[str],
        request: Request[Any, Any, Any],
        campaign_id: Annotated[str | None, QueryParameter(required=False)] = None,
        limit: Limit = None,
        after: After = None,
    ) -> Response[dict[str, Any]]:
        """The decision log: every real gate decision for this customer, with the policy version. With
        ``limit`` (1-1000) a page, the next one in a ``Link: <...>; rel="next"`` header (absent on the
        last page); without it, the whole log."""
        check_customer_id(customer_id)
        n = lists.parse_limit(limit, default=None)
        if n is None and after is None:
            return Response({"decisions": await approvals.decision_log(rt, customer_id, campaign_id)})
        items, nxt = await lists.decisions_page(
            rt, customer_id, campaign_id, limit=n or lists.DEFAULT_LIMIT, after=after
        )
        link = lists.next_link(request.url.path, list(request.query_params.multi_items()), nxt)
        return Response({"decisions": items}, headers=link)

    @get(
        "/consent-receipt",
        operation_id="getConsentReceipt",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*READ_AUDIT),
    )
    async def consent_receipt(
        self, rt: NamedDependency[Runtime], customer_id: FromPath[str]
    ) -> dict[str, Any]:
        """The customer's current consents, each with when and how it was given (ISO/IEC TS 27560 fields)."""
        return await consent.consent_receipt(rt, customer_id)

    @get(
        "/consent-state",
        operation_id="getConsentState",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*ALL),
    )
    async def get_consent_state(
        self,
        rt: NamedDependency[Runtime],
        customer_id: FromPath[str],
        at: Annotated[
            str | None, QueryParameter(required=False, description="RFC 3339 with an offset; default: now")
        ] = None,
    ) -> ConsentStateAnswer:
        """The consent state in force at ``at`` (default: now), rebuilt from the ledger alone: the
        channel, topics, quiet hours, own cap and pause, with the latest event per subject at or before
        ``at`` (seq, hash) and the ledger head read with them (it verifies with
        ``/v1/consent-events/verify?head=``). An erased customer still answers, by id (the ledger keeps
        its pseudonym); an id with no customer and no ledger event: 404."""
        return await consent_state(rt, customer_id, parse_instant(at, "at"))
