#!/usr/bin/env python3
# SPDX-License-Identifier: ISC
"""bench/delay.py LISTEN_PORT TARGET_PORT ONE_WAY_MS: a TCP proxy on
127.0.0.1 that holds every chunk ONE_WAY_MS in each direction before it
passes it on, so a session through it sees a round trip of twice that
(the kernel here has no netem).  Chunks keep their order and are not
throttled: only latency is added, not a bandwidth limit.  Runs until
SIGTERM; a benchmark tool, not a test."""

import asyncio
import signal
import sys


async def pipe(reader, writer, delay, loop):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            await asyncio.sleep(0)
            loop.call_later(delay, writer.write, data)
        await asyncio.sleep(delay)
    except (ConnectionError, OSError):
        pass
    try:
        writer.write_eof()
    except (ConnectionError, OSError, RuntimeError):
        pass


async def serve(target, delay):
    loop = asyncio.get_running_loop()

    async def handle(cr, cw):
        try:
            tr, tw = await asyncio.open_connection('127.0.0.1', target)
        except OSError:
            cw.close()
            return
        await asyncio.gather(pipe(cr, tw, delay, loop),
                             pipe(tr, cw, delay, loop))
        cw.close()
        tw.close()

    srv = await asyncio.start_server(handle, '127.0.0.1', int(sys.argv[1]),
                                     backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with srv:
        await stop.wait()


if __name__ == '__main__':
    asyncio.run(serve(int(sys.argv[2]), float(sys.argv[3]) / 1000))
