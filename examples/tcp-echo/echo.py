"""A TCP echo server for the TCP traffic-shifting example, as Istio's tcp-echo: every line it reads
comes back prefixed with the server's name.

    python examples/tcp-echo/echo.py --port 9001 --prefix one      serve
    python examples/tcp-echo/echo.py --send 19000 --times 20       20 connections, replies counted
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import sys


async def serve(port: int, prefix: str) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(prefix.encode() + b" " + line)
            await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(echo, "127.0.0.1", port)
    except OSError as exc:  # the port is taken: one line naming the flag
        print(f"error: --port {port}: {os.strerror(exc.errno).lower() if exc.errno else exc}", file=sys.stderr)
        raise SystemExit(2) from None
    async with server:
        await server.serve_forever()


async def send(port: int, times: int) -> None:
    """One connection per message, as a new client would: each is routed on its own."""
    replies: collections.Counter[str] = collections.Counter()
    for _ in range(times):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        replies[(await asyncio.wait_for(reader.readline(), 5)).decode().strip()] += 1
        writer.close()
    for reply, count in replies.most_common():
        print(f"{count:4d}  {reply}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, help="serve on this port")
    parser.add_argument("--prefix", default="one")
    parser.add_argument("--send", type=int, metavar="PORT", help="connect to this port instead")
    parser.add_argument("--times", type=int, default=20)
    args = parser.parse_args()
    if args.send:
        asyncio.run(send(args.send, args.times))
    elif args.port:
        asyncio.run(serve(args.port, args.prefix))
    else:
        parser.error("give --port to serve or --send to connect")
