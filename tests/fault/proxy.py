"""Controllable TCP proxies between nodes and Redis (one process, one proxy per node).

Why a separate process: the fault run's clients are Python threads; keeping the proxies on
their own interpreter keeps client load from delaying forwarded bytes.

Usage: proxy.py UPSTREAM_PORT NAME[:PORT] [NAME[:PORT]...]
Each proxy listens on a free 127.0.0.1 port and forwards to 127.0.0.1:UPSTREAM_PORT (or its
own PORT: the Sentinel topology puts one proxy in front of each Redis server); the first
stdout line is
`ready NAME=PORT ...`. Then stdin takes lines `NAME MODE` and answers `ok` (or `err ...`):
  pass       forward bytes
  blackhole  TCP stays open, nothing flows either way (bytes are held, as a partition
             holds retransmissions; new connections are accepted and held too)
  slow       +250 ms each direction (order kept)
  reset      abort every current connection (RST), then pass
  cut=IP     blackhole only the connections whose peer (source) address is IP, pass the
             others (sentinels started with `bind-source-addr 127.0.0.2` lose the server
             while the nodes, from 127.0.0.1, keep it); `pass` heals
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
        self.cut = None  # a peer address whose connections are blackholed
        self.uncut = asyncio.Event()
        self.uncut.set()

    async def gate(self, peer):
        """Returns when bytes of a connection from `peer` may flow."""
        while True:
            await self.open.wait()
            if self.cut is None or peer != self.cut:
                return
            await self.uncut.wait()

    def set_mode(self, mode):
        if mode.startswith("cut="):
            self.cut = mode[4:]
            self.uncut.clear()
            return
        self.cut = None
        self.uncut.set()
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

    async def pump(self, reader, writer, pair, peer):
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
                await self.gate(peer)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(sender())
        try:
            while True:
                await self.gate(peer)
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
        peer = (cwriter.get_extra_info("peername") or ("?",))[0]
        print(f"{self.name}: connection from {peer}", file=sys.stderr, flush=True)
        try:
            await self.gate(peer)
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
        await asyncio.gather(self.pump(creader, uwriter, pair, peer),
                             self.pump(ureader, cwriter, pair, peer))


async def main(upstream, names):
    proxies, ports = {}, []
    for spec in names:
        name, _, port = spec.partition(":")
        p = Proxy(name, int(port) if port else upstream)
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
