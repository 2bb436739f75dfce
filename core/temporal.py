"""The one Temporal client factory (DESIGN.md decision 11): every process connects here."""

from __future__ import annotations

from temporalio.client import Client

from core.settings import Settings


async def connect_client(settings: Settings, *, target: str | None = None) -> Client:
    """Connect with the project's data converter (payload codec arrives with issue 4)."""
    return await Client.connect(
        target or settings.temporal_address,
        namespace=settings.temporal_namespace,
    )


def workflow_ui_url(settings: Settings, workflow_id: str) -> str:
    base = settings.temporal_ui_url.rstrip("/")
    return f"{base}/namespaces/{settings.temporal_namespace}/workflows/{workflow_id}"
