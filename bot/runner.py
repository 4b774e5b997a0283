"""Running the conversation core, which blocks on the database, off the event loop.

On SQLite every handler goes through one thread: writers queue in Python
instead of contending for the database's write lock (where SQLite's busy
handler sleeps in milliseconds).  On PostgreSQL several threads work at once.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from core.conversation import Conversation, Handled, Incoming


class ConversationRunner:
    def __init__(self, conversation: Conversation, *, single_writer: bool) -> None:
        self.conversation = conversation
        self._executor = ThreadPoolExecutor(
            max_workers=1 if single_writer else 8, thread_name_prefix="duban-conversation"
        )

    async def handle(self, incoming: Incoming) -> Handled:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.conversation.handle, incoming)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
