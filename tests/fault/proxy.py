"""Controllable TCP proxies between nodes and Redis (one process, one proxy per node).

Why a separate process: the fault run's clients are Python threads; keeping the proxies on
their own interpreter keeps client load from delaying forwarded bytes.

Usage: proxy.py UPSTREAM_PORT NAME [NAME...]
Each proxy listens on a free 127.0.0.1 port; the first stdout line is
`ready NAME=PORT ...`. Then stdin takes lines `NAME MODE` and answers `ok` (or `err ...`):
  pass       forward bytes
  blackhole  TCP stays open, nothing flows either way (bytes are held, as a partition
             holds retransmissions; new connections are accepted and held too)
  slow       +250 ms each direction (order kept)
  reset      abort every current connection (RST), then pass
EOF-on-stdin stops the process.
"""

import asyncio
import sys

SLOW_S = 0.25
CHUNK = 65536


class Proxy:
    def __init__(self, name, upstream):
        self.name, self.upstream = name, upstream
        self.open = asyncio.Event()
        self.open.set()
        self.slow = False
        self.conns = set()  # (client writer, upstream writer | None)

    def set_mode(self, mode):
        if mode == "pass":
            self.slow = False
            self.open.set()
        elif mode == "blackhole":
            self.open.clear()
        elif mode == "slow":
            self.slow = True
            self.open.set()
        elif mode == "reset":
            for pair in list(self.conns):
                for w in pair:
                    if w is not None:
                        w.transport.abort()
            self.conns.clear()
            self.slow = False
            self.open.set()
        else:
            raise ValueError(f"unknown mode {mode}")

    async def pump(self, reader, writer, pair):
        """src -> dst; each chunk is due at read time (+250 ms when slow), sent in order."""
        queue = asyncio.Queue()

        async def sender():
            loop = asyncio.get_running_loop()
            while True:
                due, data = await queue.get()
                if data is None:
                    return
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self.open.wait()
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(sender())
        try:
            while True:
                await self.open.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                due = asyncio.get_running_loop().time() + (SLOW_S if self.slow else 0)
                await queue.put((due, data))
            await queue.put((0, None))
            await task
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            task.cancel()
            for w in pair:
                if w is not None:
                    w.transport.abort()
            self.conns.discard(pair)

    async def handle(self, creader, cwriter):
        pair = [cwriter, None]
        key = tuple(pair)
        self.conns.add(key)
        try:
            await self.open.wait()
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cwriter.transport.abort()
            self.conns.discard(key)
            return
        if key not in self.conns:  # reset while connecting
            cwriter.transport.abort()
            uwriter.transport.abort()
            return
        self.conns.discard(key)
        pair = (cwriter, uwriter)
        self.conns.add(pair)
        await asyncio.gather(self.pump(creader, uwriter, pair), self.pump(ureader, cwriter, pair))


async def main(upstream, names):
    proxies, ports = {}, []
    for name in names:
        p = Proxy(name, upstream)
        server = await asyncio.start_server(p.handle, "127.0.0.1", 0)
        proxies[name] = (p, server)
        ports.append(f"{name}={server.sockets[0].getsockname()[1]}")
    print("ready " + " ".join(ports), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        parts = line.split()
        try:
            name, mode = parts
            proxies[name][0].set_mode(mode)
            print("ok", flush=True)
        except (ValueError, KeyError) as e:
            print(f"err {e}", flush=True)
    for p, server in proxies.values():
        server.close()
        p.set_mode("reset")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2:]))
