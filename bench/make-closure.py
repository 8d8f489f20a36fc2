#!/usr/bin/env python3
"""Write N files of SIZE bytes that compress about 2:1 (half random bytes, half
repetitive text, interleaved in 4 KiB blocks), for binary cache benchmarks.

Usage: make-closure.py OUT_DIR [--count 300] [--size 1048576] [--seed 1]
"""
import argparse
import os
import random

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--count", type=int, default=300)
ap.add_argument("--size", type=int, default=1 << 20)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
rng = random.Random(a.seed)
os.makedirs(a.out, exist_ok=True)
for i in range(a.count):
    blocks = []
    n = 0
    b = 0
    while n < a.size:
        if b % 2 == 0:
            chunk = rng.randbytes(4096)
        else:
            line = f"path {i} block {b}: the quick brown fox jumps over the lazy dog\n".encode()
            chunk = (line * (4096 // len(line) + 1))[:4096]
        blocks.append(chunk)
        n += len(chunk)
        b += 1
    with open(os.path.join(a.out, f"f{i:03d}"), "wb") as f:
        f.write(b"".join(blocks)[: a.size])
