"""One alert message waiting in (or sent from) the outbox: what the delivery loop and the senders share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class OutboxRow:
    id: str
    dedup_key: str
    incident: int
    kind: str
    destination: str
    monitor: str
    conn_id: str | None
    severity: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
