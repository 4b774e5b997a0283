"""FakeTelegram in a process of its own, driven over a pipe.

In production Telegram's servers do not share a CPU (or a GIL) with the bot.
Running :class:`tests.fakes.telegram_api.FakeTelegram` in the benchmark's own
process would make every request the bot sends cost it twice (client and
server), so the benchmarks start it in a spawned child and talk to it through
a :mod:`multiprocessing` pipe: push user messages, read what was sent and how
many 429s were answered.  Its flood limits are the fake's own, unchanged.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any


def _post_updates(fake: Any, argument: dict[str, Any]) -> dict[str, int]:
    """Each (user id, text) as an Update POSTed to the webhooks, as Telegram delivers them.

    Telegram keeps up to ``max_connections`` (default 40) requests open to a
    webhook and sends an update again when the answer is not 200; the updates
    go round-robin to ``urls`` (the processes behind a load balancer).
    """
    import asyncio

    import httpx

    urls: list[str] = argument["urls"]
    updates = [fake.user_message(user_id, text) for user_id, text in argument["messages"]]
    for update in updates:  # ids of their own: a run on the same database before took the fake's first ones
        update["update_id"] += argument.get("update_id_offset", 0)
    requests = [fake._webhook_request(update, argument["secret"]) for update in updates]
    refused = 0

    async def post_all() -> None:
        nonlocal refused
        gate = asyncio.Semaphore(argument.get("connections", 40))
        async with httpx.AsyncClient(trust_env=False, timeout=60.0) as client:

            async def post(index: int, content: bytes, headers: dict[str, str]) -> None:
                nonlocal refused
                async with gate:
                    while (
                        await client.post(urls[index % len(urls)], content=content, headers=headers)
                    ).status_code != 200:
                        refused += 1
                        await asyncio.sleep(0.1)

            await asyncio.gather(*(post(i, content, headers) for i, (content, headers) in enumerate(requests)))

    asyncio.run(post_all())
    return {"posted": len(requests), "refused": refused}


def _serve(connection: Connection, options: dict[str, Any]) -> None:
    """The child: start the fake, answer commands until ``stop``."""
    from tests.fakes.telegram_api import FakeTelegram

    fake = FakeTelegram(**options).start()
    connection.send(
        {
            "token": fake.token,
            "bot_username": fake.bot_username,
            "base_url": fake.base_url,
            "base_file_url": fake.base_file_url,
        }
    )
    while True:
        command, argument = connection.recv()
        if command == "stop":
            fake.stop()
            connection.send(None)
            return
        if command == "messages":
            for user_id, text in argument:
                fake.user_message(user_id, text)
            connection.send(len(argument))
        elif command == "post_updates":
            connection.send(_post_updates(fake, argument))
        elif command == "sent_times":
            connection.send([message.at for message in fake.sent])
        elif command == "sent_chats":
            connection.send(len({message.chat_id for message in fake.sent}))
        elif command == "count_429":
            connection.send(fake.count_429)
        elif command == "peak_open_calls":
            connection.send(fake.peak_open_calls)
        else:
            connection.send(ValueError(f"unknown command {command!r}"))


class FakeTelegramProcess:
    """A started FakeTelegram in a spawned process; use as a context manager."""

    def __init__(self, **options: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, options), name="fake-telegram", daemon=True)
        self._process.start()
        info = self._connection.recv()
        self.token: str = info["token"]
        self.bot_username: str = info["bot_username"]
        self.base_url: str = info["base_url"]
        self.base_file_url: str = info["base_file_url"]

    def _call(self, command: str, argument: Any = None) -> Any:
        self._connection.send((command, argument))
        answer = self._connection.recv()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def user_messages(self, messages: list[tuple[int, str]]) -> None:
        """Each (user id, text) is sent by that user in their private chat, in this order."""
        self._call("messages", messages)

    def post_updates(
        self,
        urls: list[str],
        secret: str,
        messages: list[tuple[int, str]],
        *,
        connections: int = 40,
        update_id_offset: int = 0,
    ) -> dict[str, int]:
        """Each (user id, text) POSTed as an Update to the webhooks ``urls`` (round-robin); returns when all got 200.

        ``update_id_offset`` is added to the fake's update ids.
        """
        answer = self._call(
            "post_updates",
            {
                "urls": urls,
                "secret": secret,
                "messages": messages,
                "connections": connections,
                "update_id_offset": update_id_offset,
            },
        )
        return dict(answer)

    def sent_times(self) -> list[float]:
        """``time.monotonic()`` (system-wide on Linux) at which each send was accepted."""
        return list(self._call("sent_times"))

    def sent_chats(self) -> int:
        return int(self._call("sent_chats"))

    def count_429(self) -> int:
        return int(self._call("count_429"))

    def peak_open_calls(self) -> int:
        return int(self._call("peak_open_calls"))

    def stop(self) -> None:
        if self._process.is_alive():
            self._call("stop")
            self._process.join(10)

    def __enter__(self) -> FakeTelegramProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class FakeTelegramInProcess:
    """The same interface over a FakeTelegram in this process (``--fake-in-process``, for comparison)."""

    def __init__(self, **options: Any) -> None:
        from tests.fakes.telegram_api import FakeTelegram

        self._fake = FakeTelegram(**options).start()
        self.token = self._fake.token
        self.bot_username = self._fake.bot_username
        self.base_url = self._fake.base_url
        self.base_file_url = self._fake.base_file_url

    def user_messages(self, messages: list[tuple[int, str]]) -> None:
        for user_id, text in messages:
            self._fake.user_message(user_id, text)

    def sent_times(self) -> list[float]:
        return [message.at for message in self._fake.sent]

    def sent_chats(self) -> int:
        return len({message.chat_id for message in self._fake.sent})

    def count_429(self) -> int:
        return self._fake.count_429

    def peak_open_calls(self) -> int:
        return self._fake.peak_open_calls

    def stop(self) -> None:
        self._fake.stop()

    def __enter__(self) -> FakeTelegramInProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_fake(in_process: bool, **options: Any) -> FakeTelegramProcess | FakeTelegramInProcess:
    """A started fake Bot API server with Telegram's flood limits, in its own process unless asked otherwise."""
    return FakeTelegramInProcess(**options) if in_process else FakeTelegramProcess(**options)
