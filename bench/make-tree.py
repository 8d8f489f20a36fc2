#!/usr/bin/env python3
"""Generate a deterministic file tree for NAR dump/hash benchmarks.

Usage: make-tree.py OUT_DIR [--files N] [--big] [--seed S]

Writes ~N files (default 20000) of 1-16 KiB of random-looking (incompressible)
bytes in nested directories (3 levels, ~25 entries per directory), with a few
executables, symlinks and empty directories; ~150 MiB of NAR for the default.
--big adds two 100 MiB files at the top level. Same arguments, same tree.
Only the Python 3 standard library is used.
"""

import argparse
import os
import random
import sys


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output directory (must not exist)")
    ap.add_argument("--files", type=int, default=20000, help="number of small files")
    ap.add_argument("--big", action="store_true", help="add two 100 MiB files")
    ap.add_argument("--seed", type=int, default=1, help="RNG seed")
    args = ap.parse_args()

    if os.path.lexists(args.out):
        print(f"{args.out} already exists", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    os.makedirs(args.out)

    fanout = 25
    written = 0
    i = 0
    while written < args.files:
        # Directory path from the file index: up to 3 levels of fan-out.
        a, b, c = (i // fanout // fanout // fanout) % fanout, (i // fanout // fanout) % fanout, (i // fanout) % fanout
        d = os.path.join(args.out, f"d{a:02}", f"s{b:02}", f"t{c:02}")
        os.makedirs(d, exist_ok=True)
        name = os.path.join(d, f"f{i % fanout:02}-{rng.getrandbits(24):06x}")
        kind = rng.random()
        if kind < 0.02:
            os.symlink(f"../t{(c + 1) % fanout:02}/missing-{i}", name)
        elif kind < 0.025:
            os.makedirs(name)
        else:
            size = rng.randint(1024, 16 * 1024)
            with open(name, "wb") as f:
                f.write(rng.randbytes(size))
            if kind < 0.1:
                os.chmod(name, 0o755)
            written += 1
        i += 1

    if args.big:
        for n in ("big-1", "big-2"):
            with open(os.path.join(args.out, n), "wb") as f:
                for _ in range(100):
                    f.write(rng.randbytes(1 << 20))
    return 0


if __name__ == "__main__":
    sys.exit(main())
