"""A local SMTP sink for development: aiosmtpd on 127.0.0.1, every accepted message saved as a .eml file.

Not a relay: nothing is forwarded anywhere. ``prefcenter serve --demo-sink DIR`` starts it on the
configured ``PREFCENTER_SMTP_PORT`` so the dispatcher's email lands in DIR.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class SaveToFolder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw: bytes = envelope.original_content or envelope.content
        number = next(self._numbers)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{number:06d}.eml"
        tmp = self.folder / (name + ".tmp")
        tmp.write_bytes(raw)
        tmp.replace(self.folder / name)
        return "250 Message accepted for delivery"


def start_sink(folder: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """Start the sink in its own thread (``Controller.stop()`` ends it). An explicit port and IPv4 host:
    aiosmtpd's ``port=0`` does not work and its default host is ``::1``."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP command at INFO
    controller = Controller(SaveToFolder(folder), hostname=host, port=port)
    controller.start()
    return controller
