#!/usr/bin/env python3
"""Memory of a daemon and its per-connection processes, for bench/daemon.sh.

  daemon_procs.py tree PID
      prints the sum of RSS and of PSS (KiB, from /proc/*/smaps_rollup) of PID
      and all its descendants, and how many processes that is
  daemon_procs.py sample PID OUT
      every 50 ms, sums RSS and PSS over PID's process tree; when PID exits (or
      this gets SIGTERM) writes the peaks to OUT ("peak_rss_kib peak_pss_kib")
  daemon_procs.py idle SOCKET N PID
      opens N connections to the daemon at SOCKET, does the worker protocol's
      handshake on each (as Nix 2.26's client: protocol 1.38, no features, then
      reads the daemon's STDERR_LAST), waits until PID's tree has N more
      processes, then prints its memory as `tree` does (all connections idle)

  daemon_procs.py query SOCKET PATHS_FILE N
      one connection: N QueryPathInfo requests for the paths of PATHS_FILE (one
      per line, cycled), written ahead of the replies (a writer thread), every
      reply read and checked valid; prints the wall time in seconds

The handshake is the one of crates/rix-formats/src/worker_protocol/handshake.rs.
"""
import os
import signal
import socket
import struct
import sys
import time

WORKER_MAGIC_1 = 0x6E697863
WORKER_MAGIC_2 = 0x6478696F
STDERR_LAST = 0x616C7473
STDERR_NEXT = 0x6F6C6D67
VERSION = (1 << 8) | 38


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory(pids):
    rss = pss = n = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            n += 1
        except OSError:
            pass
    return rss, pss, n


def tree(pid):
    rss, pss, n = memory(descendants(pid))
    print(f"processes={n} rss_kib={rss} pss_kib={pss}")


def sample(pid, out):
    peak_rss = peak_pss = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop and os.path.exists(f"/proc/{pid}"):
        rss, pss, _ = memory(descendants(pid))
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    with open(out, "w") as f:
        f.write(f"{peak_rss} {peak_pss}\n")


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("the daemon closed the connection")
        buf += chunk
    return buf


def recv_u64(s):
    return struct.unpack("<Q", recv_exact(s, 8))[0]


def recv_string(s):
    n = recv_u64(s)
    data = recv_exact(s, (n + 7) // 8 * 8)
    return data[:n]


def handshake(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(struct.pack("<QQ", WORKER_MAGIC_1, VERSION))
    if recv_u64(s) != WORKER_MAGIC_2:
        raise RuntimeError("not a Nix daemon")
    version = min(recv_u64(s), VERSION)
    minor = version & 0xFF
    if minor >= 38:
        s.sendall(struct.pack("<Q", 0))  # our features: none
        for _ in range(recv_u64(s)):
            recv_string(s)
    s.sendall(struct.pack("<QQ", 0, 0))  # no CPU affinity, no reserveSpace
    if minor >= 33:
        recv_string(s)  # the daemon's Nix version
    if minor >= 35:
        recv_u64(s)  # trusted or not
    while True:
        msg = recv_u64(s)
        if msg == STDERR_LAST:
            return s
        if msg != STDERR_NEXT:
            raise RuntimeError(f"unexpected stderr message {msg:#x}")
        recv_string(s)


QUERY_PATH_INFO = 26


def pad(b):
    return struct.pack("<Q", len(b)) + b + b"\0" * ((8 - len(b) % 8) % 8)


class Reader:
    """Buffered reads from a socket (the replies of many requests at once)."""

    def __init__(self, s):
        self.s, self.buf, self.pos = s, b"", 0

    def take(self, n):
        while len(self.buf) - self.pos < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError("the daemon closed the connection")
            self.buf = self.buf[self.pos:] + chunk
            self.pos = 0
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def string(self):
        n = self.u64()
        return self.take((n + 7) // 8 * 8)[:n]


def query(path, paths_file, n):
    import threading
    with open(paths_file) as f:
        paths = [line.strip().encode() for line in f if line.strip()]
    s = handshake(path)
    requests = [struct.pack("<Q", QUERY_PATH_INFO) + pad(p) for p in paths]
    start = time.time()

    def write():
        batch = []
        for i in range(n):
            batch.append(requests[i % len(requests)])
            if len(batch) == 256:
                s.sendall(b"".join(batch))
                batch = []
        s.sendall(b"".join(batch))

    writer = threading.Thread(target=write)
    writer.start()
    r = Reader(s)
    for _ in range(n):
        while True:
            msg = r.u64()
            if msg == STDERR_LAST:
                break
            if msg != STDERR_NEXT:
                raise RuntimeError(f"unexpected stderr message {msg:#x}")
            r.string()
        if r.u64() != 1:
            raise RuntimeError("a path is not valid")
        r.string()  # deriver
        r.string()  # narHash
        for _ in range(r.u64()):
            r.string()  # references
        r.u64()  # registrationTime
        r.u64()  # narSize
        r.u64()  # ultimate
        for _ in range(r.u64()):
            r.string()  # sigs
        r.string()  # ca
    writer.join()
    print(f"{time.time() - start:.3f}")
    s.close()


def idle(path, n, pid):
    before = len(descendants(pid))
    conns = [handshake(path) for _ in range(n)]
    deadline = time.time() + 30
    while len(descendants(pid)) < before + n and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    tree(pid)
    for c in conns:
        c.close()


def main():
    cmd = sys.argv[1]
    if cmd == "tree":
        tree(int(sys.argv[2]))
    elif cmd == "sample":
        sample(int(sys.argv[2]), sys.argv[3])
    elif cmd == "idle":
        idle(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "query":
        query(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
