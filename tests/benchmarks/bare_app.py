"""The ceiling of this stack: a bare litestar endpoint that decodes and returns a small msgspec Struct."""

from __future__ import annotations

import msgspec
from litestar import Litestar, post
from litestar.params import JSONBody


class Small(msgspec.Struct):
    campaign_id: str
    customer_ids: list[str]


@post("/echo", status_code=200)
async def echo(data: JSONBody[Small]) -> Small:
    return data


app = Litestar([echo], logging_config=None)
