"""Running the conversation core, which blocks on the database, off the event loop."""

from __future__ import annotations

from core.conversation import Conversation, Handled, Incoming
from storage.threads import DatabaseThreads


class ConversationRunner:
    """Hands each incoming update to the conversation core on a database thread."""

    def __init__(self, conversation: Conversation, threads: DatabaseThreads) -> None:
        self.conversation = conversation
        self.threads = threads

    async def handle(self, incoming: Incoming) -> Handled:
        return await self.threads.run(self.conversation.handle, incoming)
