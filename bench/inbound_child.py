"""Child process of the inbound benchmark on PostgreSQL: one ``duban run`` service with the benchmark's clock.

``python -m bench.inbound_child`` with the service's settings in the
environment (``DUBAN_…``; Telegram in webhook mode, so that several processes
take updates side by side, as in production).  The service is
:func:`bot.service.build_service` + :func:`bot.service.run_service`, as ``duban
run`` builds it, except that the conversation's clock is held at the
benchmark's moment (2024-02-22 10:00, as in the one-process run).  Prints
``ready PORT`` once the web server listens; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

from bench.common import INBOUND_AT
from bot.service import Service, build_service, run_service
from core.clock import ManualClock, SystemClock
from core.config import load_settings


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    service = build_service(load_settings(), clock=ManualClock(INBOUND_AT), sender_clock=SystemClock())

    def ready(started: Service) -> None:
        print(f"ready {started.port}", flush=True)

    await run_service(service, stop, on_ready=ready)


if __name__ == "__main__":
    asyncio.run(main())
