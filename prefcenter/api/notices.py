"""``/v1/notices``: the texts behind a notice version (COMPLIANCE items 15, 16, edge 21)."""

from __future__ import annotations

from litestar import Controller, Response, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from prefcenter.api.auth import ALL, access
from prefcenter.api.openapi import created
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.domain.ledger import Notice
from prefcenter.services import notices
from prefcenter.services.notices import NoticeWrite
from prefcenter.services.runtime import Runtime


class NoticeController(Controller):
    path = "/v1/notices"
    tags = ["notices"]

    @put(
        "/{notice_version:str}",
        operation_id="putNotice",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses={**created(Notice), **errors(*AUTH_ERRORS, *BODY_ERRORS, 409, 503)},
        **access("admin"),
    )
    async def put_notice(
        self, rt: NamedDependency[Runtime], notice_version: FromPath[str], data: JSONBody[NoticeWrite]
    ) -> Response[Notice]:
        """Register a notice version's texts, once (201). The same texts again, compared after Unicode NFC
        normalisation, change nothing (200); other texts for a registered version: 409, nothing changes.
        Language tags must be valid BCP 47 and differ other than in case (400); texts are stored NFC, and
        `sha256` is the hex SHA-256 of each NFC text's UTF-8 bytes."""
        notice, was_created = await notices.put_notice(rt, notice_version, data)
        return Response(notice, status_code=HTTP_201_CREATED if was_created else HTTP_200_OK)

    @get(
        "/{notice_version:str}",
        operation_id="getNotice",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*ALL),
    )
    async def get_notice(self, rt: NamedDependency[Runtime], notice_version: FromPath[str]) -> Notice:
        """A registered notice: its texts by language, each text's `sha256`, and when it was registered.
        A consent event's `notice_sha256` is one of these hashes: the exact text the person was shown."""
        return await notices.get_notice(rt, notice_version)
