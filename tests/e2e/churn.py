# SPDX-License-Identifier: MIT
"""Connection churn for the tcptrack end-to-end tests: many short connections,
fast, each with its own exact byte counts (same wire protocol as traffic.py:
the client's first HEADER_LEN bytes carry the size of the server's reply).

  server --bind ADDR [--port P]
      Single-threaded (selectors) server. Prints {"event":"ready","port":P},
      then serves until SIGTERM/SIGINT: read to EOF, send the reply, close.
      On exit prints {"event":"done","served":K,"errors":E}.

  client --host H --port P --count K [--procs N] [--threads T] [--seed S]
         [--batches B] [--batch-pause SEC] [--retry-addrnotavail]
      K connections spread over N processes x T threads. Connection i sends
      n_i = HEADER_LEN + (i*37+S) % 1500 bytes and asks for m_i = (i*53+S) % 2500
      bytes back (client: connect, send, shutdown(SHUT_WR), read to EOF, close).
      With --batches B the K connections run in B consecutive batches and a line
      {"event":"batch","index":b,"done":...} is printed after each (then the
      client waits --batch-pause seconds, or for a line on stdin with
      --batch-pause -1).
      Finally prints {"conns":[{"i","client_port","sent","received","expected",
      "t_start","t_end"},...],"errors":[...],"elapsed":SEC}; exit 1 on any error.
      t_* are CLOCK_MONOTONIC seconds (comparable across processes).
"""

import errno
import multiprocessing as mp
import os
import selectors
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from traffic import HEADER_LEN, MAGIC, arg_parser, emit, family_of, payload  # noqa: E402


def sizes(i, seed):
    return HEADER_LEN + (i * 37 + seed) % 1500, (i * 53 + seed) % 2500


# ---------------------------------------------------------------- server


def run_server(args):
    lsock = socket.socket(family_of(args.bind), socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(4096)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    stats = {"served": 0, "errors": 0}
    stop = []

    def on_signal(*_):
        stop.append(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emit({"event": "ready", "port": lsock.getsockname()[1]})

    class Conn:
        __slots__ = ("sock", "head", "out")

        def __init__(self, sock):
            self.sock, self.head, self.out = sock, b"", None

    def finish(c, ok):
        sel.unregister(c.sock)
        c.sock.close()
        stats["served" if ok else "errors"] += 1

    while not stop:
        for key, ev in sel.select(0.2):
            if key.data is None:
                while True:
                    try:
                        s, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    s.setblocking(False)
                    sel.register(s, selectors.EVENT_READ, Conn(s))
                continue
            c = key.data
            try:
                if c.out is None:
                    buf = c.sock.recv(65536)
                    if buf:
                        if len(c.head) < HEADER_LEN:
                            c.head += buf[: HEADER_LEN - len(c.head)]
                        continue
                    reply = 0
                    if len(c.head) == HEADER_LEN and c.head.startswith(MAGIC):
                        reply = int(c.head[len(MAGIC):])
                    c.out = memoryview(b"y" * reply)
                    sel.modify(c.sock, selectors.EVENT_WRITE, c)
                if c.out is not None:
                    while c.out:
                        n = c.sock.send(c.out)
                        c.out = c.out[n:]
                    finish(c, True)
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                finish(c, False)
    emit({"event": "done", "served": stats["served"], "errors": stats["errors"]})


# ---------------------------------------------------------------- client


def one(host, port, i, seed, retry):
    n, m = sizes(i, seed)
    data = payload(n, m)
    deadline = time.monotonic() + 10
    while True:
        s = socket.socket(family_of(host), socket.SOCK_STREAM)
        s.settimeout(20)
        try:
            t0 = time.monotonic()
            s.connect((host, port))
            break
        except OSError as e:
            s.close()
            if retry and e.errno == errno.EADDRNOTAVAIL and time.monotonic() < deadline:
                time.sleep(0.001)
                continue
            raise
    try:
        cport = s.getsockname()[1]
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = 0
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
    finally:
        s.close()
    return {"i": i, "client_port": cport, "sent": n, "received": got, "expected": m,
            "t_start": t0, "t_end": time.monotonic()}


def worker(args, indices, q):
    results, errors = [], []
    lock = threading.Lock()
    it = iter(indices)

    def loop():
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            try:
                r = one(args.host, args.port, i, args.seed, args.retry_addrnotavail)
                with lock:
                    results.append(r)
            except OSError as e:
                with lock:
                    errors.append("conn %d: %s" % (i, e))

    ts = [threading.Thread(target=loop) for _ in range(args.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put((results, errors))


def run_batch(args, indices):
    q = mp.Queue()
    procs = [mp.Process(target=worker, args=(args, indices[k::args.procs], q))
             for k in range(args.procs)]
    for p in procs:
        p.start()
    results, errors = [], []
    for _ in procs:
        r, e = q.get()
        results += r
        errors += e
    for p in procs:
        p.join()
    return results, errors


def run_client(args):
    results, errors = [], []
    per = -(-args.count // args.batches)
    t0 = time.monotonic()
    for b in range(args.batches):
        idx = list(range(b * per, min(args.count, (b + 1) * per)))
        if not idx:
            break
        r, e = run_batch(args, idx)
        results += r
        errors += e
        if args.batches > 1:
            emit({"event": "batch", "index": b, "done": len(results), "errors": len(errors)})
            if b + 1 < args.batches:
                if args.batch_pause < 0:
                    sys.stdin.readline()
                else:
                    time.sleep(args.batch_pause)
    elapsed = time.monotonic() - t0
    results.sort(key=lambda r: r["i"])
    emit({"conns": results, "errors": errors, "elapsed": elapsed})
    bad = [r for r in results if r["received"] != r["expected"]]
    if errors or bad:
        sys.stderr.write("churn.py: %d failed, %d short: %s\n" % (len(errors), len(bad), errors[:3]))
        sys.exit(1)


def main():
    ap, _, _, cp = arg_parser(__doc__)
    cp.add_argument("--count", type=int, required=True)
    cp.add_argument("--procs", type=int, default=2)
    cp.add_argument("--threads", type=int, default=8)
    cp.add_argument("--seed", type=int, default=0)
    cp.add_argument("--batches", type=int, default=1)
    cp.add_argument("--batch-pause", type=float, default=0.0)
    cp.add_argument("--retry-addrnotavail", action="store_true")
    args = ap.parse_args()
    {"server": run_server, "client": run_client}[args.mode](args)


if __name__ == "__main__":
    main()
