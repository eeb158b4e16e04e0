# SPDX-License-Identifier: MIT
"""Deterministic TCP traffic for the tcptrack end-to-end tests.

Every connection moves an exact number of payload bytes each way and closes
cleanly (FIN both ways, no RST):

  client: connect, send exactly N bytes, shutdown(SHUT_WR), read to EOF, close
  server: read to EOF, send exactly M bytes, close

The server learns M from the first bytes of the client's payload (a fixed
header that is part of the N bytes), so every connection can carry its own
pair of counts. Payloads shorter than the header use the server's --reply.

Modes (all print JSON on stdout; errors go to stderr with exit status 1):

  server --bind ADDR [--port P] [--max-conns K] [--reply M]
      Prints {"event":"ready","port":P} once listening, then one line
      {"event":"conn",...} per finished connection; exits after K connections
      (or on SIGTERM/SIGINT) with {"event":"done","conns":[...]}.

  client --host H --port P --conn N:M [--conn N:M ...] [--concurrency C]
      Runs the connections (C at a time) and prints one JSON object
      {"conns":[{"client_port":..,"sent":N,"received":M,"expected":M}, ...]}.
      Exits 1 if any connection failed or received a different count.

  hold --host H --port P
      Connects and prints {"event":"connected","client_port":..} at once,
      then waits for a line "send N M" on stdin, sends N bytes (asking for M
      back), shuts down, reads to EOF, closes and prints
      {"event":"done","client_port":..,"sent":N,"received":R}.
      Used for connections that are established before tcptrack starts.
"""

import argparse
import json
import signal
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

MAGIC = b"TTE2E"
HEADER_LEN = len(MAGIC) + 12  # magic + 12 ASCII digits of the reply size
CHUNK = 65536


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def die(msg):
    sys.stderr.write("traffic.py: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(1)


def payload(n, reply):
    """Exactly n bytes; the first HEADER_LEN carry the reply size when they fit."""
    if n >= HEADER_LEN:
        head = MAGIC + b"%012d" % reply
        body = bytes((i * 7 + 3) & 0xFF for i in range(min(n - HEADER_LEN, 4096)))
        if n - HEADER_LEN > len(body):
            reps = (n - HEADER_LEN) // max(len(body), 1) + 1
            body = (body * reps)[: n - HEADER_LEN]
        return head + body
    return b"x" * n


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def send_all(sock, data):
    view = memoryview(data)
    while view:
        sent = sock.send(view[:CHUNK])
        view = view[sent:]


def read_to_eof(sock, keep=0):
    """Returns (total bytes read, first `keep` bytes)."""
    total = 0
    head = b""
    while True:
        buf = sock.recv(CHUNK)
        if not buf:
            return total, head
        if len(head) < keep:
            head += buf[: keep - len(head)]
        total += len(buf)


# ---------------------------------------------------------------- server


def run_server(args):
    fam = family_of(args.bind)
    lsock = socket.socket(fam, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((args.bind, args.port))
    lsock.listen(256)
    port = lsock.getsockname()[1]

    done = []
    lock = threading.Lock()
    finished = threading.Event()

    def report_and_exit(*_):
        with lock:
            emit({"event": "done", "conns": list(done)})
        sys.stdout.flush()
        # os._exit: do not wait for handler threads or the blocked accept().
        import os

        os._exit(0)

    signal.signal(signal.SIGTERM, report_and_exit)
    signal.signal(signal.SIGINT, report_and_exit)

    emit({"event": "ready", "port": port})

    def handle(conn, peer):
        rec = {"client_addr": peer[0], "client_port": peer[1]}
        try:
            with conn:
                received, head = read_to_eof(conn, HEADER_LEN)
                reply = args.reply
                if len(head) == HEADER_LEN and head.startswith(MAGIC):
                    reply = int(head[len(MAGIC):])
                send_all(conn, b"y" * reply)
                rec.update(received=received, sent=reply, ok=True)
        except OSError as e:
            rec.update(ok=False, error=str(e))
        with lock:
            done.append(rec)
            emit(dict(rec, event="conn"))
            if args.max_conns and len(done) >= args.max_conns:
                finished.set()

    def acceptor():
        while True:
            try:
                conn, peer = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn, peer), daemon=True).start()

    threading.Thread(target=acceptor, daemon=True).start()
    # Wait in the main thread so signals are delivered promptly.
    while not finished.wait(0.2):
        pass
    report_and_exit()


# ---------------------------------------------------------------- client


def one_connection(host, port, n, m, timeout):
    fam = family_of(host)
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        cport = s.getsockname()[1]
        send_all(s, payload(n, m))
        s.shutdown(socket.SHUT_WR)
        received, _ = read_to_eof(s)
    return {"client_port": cport, "sent": n, "received": received, "expected": m}


def parse_conn(spec):
    try:
        n, m = spec.split(":")
        n, m = int(n), int(m)
    except ValueError:
        raise argparse.ArgumentTypeError("expected N:M, got %r" % spec)
    if n < HEADER_LEN and m != 0:
        # Too short to carry the header: the server would reply with --reply.
        raise argparse.ArgumentTypeError("N must be >= %d when M != 0" % HEADER_LEN)
    return n, m


def run_client(args):
    conns = args.conn or [(100000, 54321)]
    results = [None] * len(conns)
    errors = []

    def job(i, nm):
        try:
            results[i] = one_connection(args.host, args.port, nm[0], nm[1], args.timeout)
        except OSError as e:
            errors.append("connection %d (%d:%d): %s" % (i, nm[0], nm[1], e))

    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        for i, nm in enumerate(conns):
            pool.submit(job, i, nm)
    emit({"conns": [r for r in results if r is not None], "errors": errors})
    bad = [r for r in results if r is not None and r["received"] != r["expected"]]
    if errors or bad:
        die("%d failed, %d short: %s" % (len(errors), len(bad), errors[:3]))


# ---------------------------------------------------------------- hold


def run_hold(args):
    fam = family_of(args.host)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    s.connect((args.host, args.port))
    cport = s.getsockname()[1]
    emit({"event": "connected", "client_port": cport})
    line = sys.stdin.readline().split()
    if len(line) != 3 or line[0] != "send":
        s.close()
        die("expected 'send N M' on stdin, got %r" % line)
    n, m = int(line[1]), int(line[2])
    send_all(s, payload(n, m))
    s.shutdown(socket.SHUT_WR)
    received, _ = read_to_eof(s)
    s.close()
    emit({"event": "done", "client_port": cport, "sent": n, "received": received})
    if received != m:
        die("received %d bytes, expected %d" % (received, m))


def arg_parser(doc):
    """(parser, subparsers, server parser, client parser) with the options the
    server (--bind, --port) and client (--host, --port) modes of traffic.py and
    churn.py share; `doc` is the script's docstring."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    sp = sub.add_parser("server")
    sp.add_argument("--bind", required=True)
    sp.add_argument("--port", type=int, default=0)
    cp = sub.add_parser("client")
    cp.add_argument("--host", required=True)
    cp.add_argument("--port", type=int, required=True)
    return ap, sub, sp, cp


def main():
    ap, sub, sp, cp = arg_parser(__doc__)
    sp.add_argument("--max-conns", type=int, default=0)
    sp.add_argument("--reply", type=int, default=0)

    cp.add_argument("--conn", type=parse_conn, action="append")
    cp.add_argument("--concurrency", type=int, default=1)
    cp.add_argument("--timeout", type=float, default=20.0)

    hp = sub.add_parser("hold")
    hp.add_argument("--host", required=True)
    hp.add_argument("--port", type=int, required=True)
    hp.add_argument("--timeout", type=float, default=60.0)

    args = ap.parse_args()
    {"server": run_server, "client": run_client, "hold": run_hold}[args.mode](args)


if __name__ == "__main__":
    main()
