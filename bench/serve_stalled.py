#!/usr/bin/env python3
"""Memory of `rix serve` under clients that request a NAR and read nothing.

usage: serve_stalled.py RIX STORE HASH_PART CLIENTS COMPRESSION [SERVE ARGS...]

Starts `RIX --store STORE serve` on 127.0.0.1, fetches HASH_PART's narinfo,
opens CLIENTS connections that each request its NAR and never read, then closes
them; prints the server's VmRSS/VmHWM (MiB) at the start, after SETTLE seconds
of stalling (default 5) and SETTLE seconds after the clients went.
"""
import os
import re
import socket
import subprocess
import sys
import time

rix, store, hash_part, clients, compression = sys.argv[1:6]
settle = float(os.environ.get("SETTLE", "5"))
server = subprocess.Popen(
    [rix, "--store", store, "serve", "--listen", "127.0.0.1:0",
     "--compression", compression] + sys.argv[6:],
    stderr=subprocess.PIPE, text=True)
host, port = server.stderr.readline().strip().rsplit("http://", 1)[1].split(":")


def memory():
    status = open(f"/proc/{server.pid}/status").read()
    return tuple(int(re.search(k + r":\s+(\d+)", status).group(1)) // 1024
                 for k in ("VmRSS", "VmHWM"))


def connect(path):
    s = socket.create_connection((host, int(port)))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


s = connect(f"/{hash_part}.narinfo")
url = re.search(rb"URL: (\S+)", s.recv(65536)).group(1).decode()
s.close()
print("baseline          RSS/HWM MiB", memory())
stalled = [connect(f"/{url}") for _ in range(int(clients))]
time.sleep(settle)
print(f"{clients} stalled     RSS/HWM MiB", memory())
for s in stalled:
    s.close()
time.sleep(settle)
print("after they closed RSS/HWM MiB", memory())
server.kill()
server.wait()
