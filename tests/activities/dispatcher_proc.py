"""A platform-event dispatcher in a process of its own, as each `mahnwerk worker` runs one
(tests/activities/test_events_claims.py starts several against one database).

    python -m tests.activities.dispatcher_proc DB_URL EVENTS_URL SECRET LEASE_SECONDS MODE

MODE `run`: deliver until killed. MODE `claim-and-die`: claim the due events, print how many
and until when, and die at once (SIGKILL), holding the claims — a worker killed mid-round.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

from activities.events import EventDispatcher
from core.db import make_engine, make_session_factory


def main(argv: list[str]) -> None:
    db_url, events_url, secret, lease, mode = argv
    sessions = make_session_factory(make_engine(db_url, pool_size=2))
    dispatcher = EventDispatcher(
        sessions,
        events_url,
        secret,
        poll_interval=0.05,
        timeout=1.0,
        lease=timedelta(seconds=float(lease)),
    )
    if mode == "claim-and-die":
        rows = dispatcher._claim()
        until = max((r.claimed_until for r in rows if r.claimed_until), default=None)
        print(f"claimed {len(rows)} until {until.isoformat() if until else '-'}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    print(f"dispatcher {dispatcher.name} running", flush=True)
    asyncio.run(dispatcher.run())


if __name__ == "__main__":
    main(sys.argv[1:])
