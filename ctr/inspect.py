"""`ctr inspect`: one JSON schema for a container of any backend.

Common fields come from ctr's record, refreshed live by the backend; the
backend adds where its root filesystem and cgroup are, and its own raw view
(native: the record; docker: the engine's inspect; lxc: its config keys).
"""

from __future__ import annotations

from ctr.backends.base import Backend
from ctr.state.logs import rfc3339

SCHEMA_VERSION = 1


def inspect_document(backend: Backend, name: str) -> dict:
    record = backend.get(name)
    view = backend.inspect(name)
    return {
        "schema": SCHEMA_VERSION,
        "id": record.id,
        "name": record.name,
        "image": record.image,
        "image_digest": record.image_digest,
        "created": rfc3339(record.created),
        "spec": record.spec,
        "state": {
            "status": record.status,
            "running": record.status in ("running", "paused"),
            "paused": record.status == "paused",
            "pid": record.pid,
            "exit_code": record.exit_code,
            "oom_killed": record.oom_killed,
            "started_at": rfc3339(record.started) if record.started else None,
            "finished_at": rfc3339(record.finished) if record.finished else None,
        },
        "cgroup": view.get("cgroup", ""),
        "rootfs": view.get("rootfs", {}),
        "backend": {"name": record.backend, "raw": view.get("raw", {})},
    }
