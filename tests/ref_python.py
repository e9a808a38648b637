#!/usr/bin/env python3
"""ref_python.py - TCP echo servers in Python, three designs in one file.

A reference for `make bench` (tests/bench.sh), not a stage of the course:
the same load generator measures these beside the C servers. The three
designs are the ones the Python tutorials the course starts from teach,
written the idiomatic way:

  asyncio     asyncio.start_server(): a coroutine per client on one event loop
  selectors   selectors.DefaultSelector() (epoll on Linux): one thread,
              non-blocking sockets, an output buffer per client
  threadpool  ThreadPoolExecutor(max_workers=WORKERS): the main thread
              accepts, a worker serves one client at a time with blocking
              recv()/sendall(); clients beyond WORKERS wait in the
              executor's queue until a worker is free

usage: python3 tests/ref_python.py DESIGN [-a ADDR] [-p PORT] [-q] [-w WORKERS]

It prints "listening on ADDR:PORT" once it accepts (-p 0: the kernel picks
the port) and stops on SIGTERM or SIGINT, closing every socket, with exit
status 0. Standard library only, Python 3.9 or later.
"""
import argparse
import asyncio
import contextlib
import ipaddress
import resource
import selectors
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

PROG = "ref_python"
BACKLOG = 4096
CHUNK = 65536
HIGH_WATER = 1 << 20    # selectors: stop reading from a client this far behind
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

quiet = False


def log(peer, what):
    """One line per connection opened or closed, unless -q."""
    if not quiet:   # one write() per line: threads never interleave halves
        sys.stderr.write(f"{PROG}: {peer} {what}\n")
        sys.stderr.flush()


def where(sockname):
    """("::1", 9000, 0, 0) -> "[::1]:9000", ("127.0.0.1", 9000) -> "127.0.0.1:9000"."""
    host, port = sockname[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def port_number(text):
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port (0..65535): {text!r}")
    return int(text)


def worker_count(text):
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 10000:
        raise argparse.ArgumentTypeError(f"not a worker count (1..10000): {text!r}")
    return int(text)


def numeric_address(text):
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a numeric IPv4 or IPv6 address: {text!r}")


def die(call, what, err):
    print(f"{PROG}: {call} {what}: {err.strerror or err}", file=sys.stderr)
    sys.exit(1)


def raise_fd_limit():
    """Every client is a descriptor: take the hard limit, not the soft 1024."""
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except OSError as err:
        die("setrlimit", "RLIMIT_NOFILE", err)


def open_listener(addr, port):
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    here = where((addr, port))
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((addr, port))
    except OSError as err:
        die("bind", here, err)
    try:
        sock.listen(BACKLOG)
    except OSError as err:
        die("listen", here, err)
    return sock


def announce(listener):
    # flush: stdout is a pipe when a script starts us; unflushed, it waits.
    print(f"listening on {where(listener.getsockname())}", flush=True)


def stop_pipe():
    """A socket that turns readable on SIGTERM or SIGINT: select() on it.

    The handlers do nothing; signal.set_wakeup_fd() makes the C-level
    handler write a byte to the other end, which wakes select() at once.
    Returns both ends: the writing one must stay open as long as we run."""
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    signal.set_wakeup_fd(w.fileno())
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, frame: None)
    return r, w


def serve_asyncio(listener, args):
    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.set)
        clients = {}    # writer -> the task of the handler serving it

        async def handle(reader, writer):
            peer = where(writer.get_extra_info("peername"))
            clients[writer] = asyncio.current_task()
            log(peer, "connected")
            try:    # a client accepted just as we stop is closed at once
                while not stop.is_set() and (data := await reader.read(CHUNK)):
                    writer.write(data)
                    await writer.drain()
            except OSError:         # ConnectionResetError & co: the peer is gone
                pass
            finally:
                del clients[writer]
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                log(peer, "closed")

        # With sock=, start_server() calls listen() again: give it our backlog.
        server = await asyncio.start_server(handle, sock=listener, backlog=BACKLOG)
        announce(listener)
        await stop.wait()
        # Stop accepting, but not server.close() yet: it would make asyncio
        # drop, unclosed, the clients it accepted but has not set up yet.
        loop.remove_reader(listener.fileno())
        # abort(), not close(): close() would wait to flush what a client
        # does not read. The handlers' read() or drain() end at once.
        for writer in list(clients):
            writer.transport.abort()
        # Let every other task finish on its own: the handlers, and the
        # clients accepted just before the stop on their way to handle(),
        # which closes them at once. (asyncio.run() would cancel them
        # instead: their sockets stay open, and Python 3.11 logs errors.)
        me = asyncio.current_task()
        while others := asyncio.all_tasks() - {me}:
            await asyncio.gather(*others, return_exceptions=True)
        server.close()      # closes the listening socket

    asyncio.run(main())


class Peer:
    """A selectors client: its socket and the bytes not yet echoed back."""

    def __init__(self, sel, sock, addr):
        self.sel, self.sock, self.addr = sel, sock, where(addr)
        self.out = bytearray()
        self.eof = False
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, self.ready)
        log(self.addr, "connected")

    def ready(self, mask):
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                return self.close()
            if data == b"":
                self.eof = True     # echo what is still owed, then close
            elif data:
                self.out += data
        if self.out:
            try:
                del self.out[:self.sock.send(self.out)]
            except BlockingIOError:
                pass
            except OSError:
                return self.close()
        if self.eof and not self.out:
            return self.close()
        # Read while the backlog is small; watch for room while there is one.
        events = selectors.EVENT_READ if len(self.out) < HIGH_WATER and not self.eof else 0
        events |= selectors.EVENT_WRITE if self.out else 0
        if events != self.sel.get_key(self.sock).events:
            self.sel.modify(self.sock, events, self.ready)

    def close(self):
        self.sel.unregister(self.sock)
        self.sock.close()
        log(self.addr, "closed")


def serve_selectors(listener, args):
    stop_r, stop_w = stop_pipe()
    stopping = False

    def on_stop(mask):
        nonlocal stopping
        stopping = True

    def on_accept(mask):
        while True:         # every client the backlog holds, not just one
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as err:      # EMFILE & co: the client waits, we go on
                print(f"{PROG}: accept: {err.strerror}", file=sys.stderr)
                return
            Peer(sel, sock, addr)

    with selectors.DefaultSelector() as sel, stop_r, stop_w:
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ, on_accept)
        sel.register(stop_r, selectors.EVENT_READ, on_stop)
        announce(listener)
        while not stopping:
            for key, mask in sel.select():
                key.data(mask)
        for key in list(sel.get_map().values()):
            if key.fileobj not in (listener, stop_r):
                key.fileobj.close()


def serve_threadpool(listener, args):
    clients = set()     # every socket accepted and not yet closed
    lock = threading.Lock()

    def handle(conn, peer):
        log(peer, "connected")
        try:
            while data := conn.recv(CHUNK):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with lock:
                clients.discard(conn)
            conn.close()
            log(peer, "closed")

    stop_r, stop_w = stop_pipe()
    executor = ThreadPoolExecutor(max_workers=args.workers)
    with selectors.DefaultSelector() as sel, stop_r, stop_w:
        # The main thread waits in select(), not accept(): the stop pipe wakes it.
        listener.setblocking(False)
        sel.register(listener, selectors.EVENT_READ)
        sel.register(stop_r, selectors.EVENT_READ)
        announce(listener)
        while not any(key.fileobj is stop_r for key, _ in sel.select()):
            try:
                conn, addr = listener.accept()
            except BlockingIOError:
                continue
            except OSError as err:
                print(f"{PROG}: accept: {err.strerror}", file=sys.stderr)
                continue
            conn.setblocking(True)
            with lock:
                clients.add(conn)
            executor.submit(handle, conn, where(addr))
    # Wake the workers blocked in recv()/sendall(): they see end of file or
    # an error and return. Clients still queued are cancelled, never served.
    with lock:
        for conn in clients:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
    executor.shutdown(wait=True, cancel_futures=True)
    for conn in clients:    # the queued ones: no worker ever closed them
        conn.close()


DESIGNS = {
    "asyncio": serve_asyncio,
    "selectors": serve_selectors,
    "threadpool": serve_threadpool,
}


def main():
    global quiet
    parser = argparse.ArgumentParser(
        prog="ref_python.py", description="TCP echo server: a reference row for bench.sh")
    parser.add_argument("design", choices=DESIGNS, help="server design")
    parser.add_argument("-a", dest="addr", type=numeric_address, default="127.0.0.1",
                        help="numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)")
    parser.add_argument("-p", dest="port", type=port_number, default=9000,
                        help="port, 0 = any free port (default 9000)")
    parser.add_argument("-q", dest="quiet", action="store_true",
                        help="quiet: no per-connection log lines")
    parser.add_argument("-w", dest="workers", type=worker_count, default=5,
                        help="threadpool: worker threads (default 5)")
    args = parser.parse_args()
    quiet = args.quiet
    raise_fd_limit()
    with open_listener(args.addr, args.port) as listener:
        DESIGNS[args.design](listener, args)


if __name__ == "__main__":
    main()
