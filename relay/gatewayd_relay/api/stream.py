"""Live updates for the landlord's and the grid worker's pages (Server-Sent Events)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from gatewayd_relay import auth
from gatewayd_relay.deps import RelayDep, StaffDep

router = APIRouter(prefix="/api", tags=["live"])


@router.get("/stream", response_class=StreamingResponse)
def stream(who: StaffDep, relay: RelayDep) -> StreamingResponse:
    """`text/event-stream` of `incident`, `door`, `access`, `house` and `person` events for the
    houses this account may see, from the process this page is connected to."""
    assert who.account is not None
    with relay.db.session() as s:
        houses = frozenset(h.id for h in auth.houses_of(s, who.account))
    return StreamingResponse(
        relay.live.stream(houses.__contains__),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
