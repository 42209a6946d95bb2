"""Ingest's projection: dead_letters rows for input that never became an envelope."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from runtime.projection import record_dead_letters
from schemas.events import DeadLetter


def record_rejections(conn: Connection, letters: Sequence[DeadLetter], originals: Sequence[bytes]
                      ) -> None:
    record_dead_letters(conn, [
        {"stage": d.stage, "topic": d.topic, "partition": d.partition, "offset": d.offset,
         "key": d.key, "error_class": d.error_class, "message": d.message, "original": raw}
        for d, raw in zip(letters, originals, strict=True)
    ])
