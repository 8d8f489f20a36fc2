#!/usr/bin/env python3
"""rix against Nix 2.26 (and 2.8) on real code: nixpkgs lib and the module system.

usage: real.py [WORKLOAD...]     (default: all; RUNS=N runs of each, default 5)

Workloads:
  misc        nixpkgs lib/tests/misc.nix (--eval --strict)
  systems     lib/tests/systems.nix plus 6,680 elaborations of lib.systems
              (every double and example, four variants, ten times)
  modules500  lib.evalModules over 500 generated modules (bench/modules/gen.py)
  modules5000 the same over 5,000 modules
  modules.sh  nixpkgs' lib/tests/modules.sh as a whole (407 checks), each tool
              as nix-instantiate

Runs are interleaved (rix, Nix 2.26, Nix 2.8, rix, ...). For each tool the
median CPU time (user + system, from wait4's rusage of the process and its
children) and the median peak RSS of the largest process are printed, with the
ratio Nix 2.26 / rix. Tools: RIX (default: target/release/rix, built first),
NIX_CURRENT (a command that runs Nix 2.26's tools by name, default
../shared/tools/nix-current when present), NIX28 (directory of Nix 2.8's
binaries, default: nix-instantiate on PATH). LIB: nixpkgs' lib (default:
tests/vectors/nixpkgs-lib/lib). Each run gets a fresh scratch directory;
nothing is deleted until the end.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUNS = int(os.environ.get("RUNS", "5"))


def find_tools():
    tools = {}
    rix = os.environ.get("RIX")
    if not rix:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "rix-cli"], cwd=ROOT, check=True)
        rix = os.path.join(ROOT, "target", "release", "rix")
    tools["rix"] = [os.path.realpath(rix), "instantiate"]
    current = os.environ.get("NIX_CURRENT") or os.path.join(ROOT, "..", "shared", "tools", "nix-current")
    if os.path.exists(current):
        tools["nix-2.26"] = [current, "nix-instantiate"]
    nix28 = os.environ.get("NIX28")
    n28 = os.path.join(nix28, "nix-instantiate") if nix28 else shutil.which("nix-instantiate")
    if n28:
        tools["nix-2.8"] = [n28]
    return tools


def run(argv, cwd, env=None):
    """CPU seconds (user + sys, children included) and peak RSS (KiB) of one command."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        # wait4's rusage covers the process and the descendants it waited for.
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read(), err.read(), (usage.ru_utime, usage.ru_stime), usage.ru_maxrss


def instantiate_workload(expr_file, args=()):
    def make(tool_argv, scratch):
        return tool_argv + ["--eval", "--strict", *args, expr_file], scratch, None
    return make


def modules_sh(lib_tests_dir):
    def make(tool_argv, scratch):
        tree = os.path.join(scratch, "lib")
        shutil.copytree(os.path.dirname(lib_tests_dir), tree, symlinks=True)
        bindir = os.path.join(scratch, "bin")
        os.makedirs(bindir)
        wrapper = os.path.join(bindir, "nix-instantiate")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\nexec " + " ".join(tool_argv) + ' "$@"\n')
        os.chmod(wrapper, 0o755)
        env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"])
        return ["bash", "modules.sh"], os.path.join(tree, "tests"), env
    return make


def main():
    lib = os.path.realpath(os.environ.get("LIB", os.path.join(ROOT, "tests", "vectors", "nixpkgs-lib", "lib")))
    tools = find_tools()
    work = tempfile.mkdtemp(prefix="rix-real-")
    gen = os.path.join(ROOT, "bench", "modules", "gen.py")
    systems = os.path.join(work, "systems.nix")
    with open(systems, "w") as f:
        f.write(f"""let
  lib = import {lib};
  tests = import {lib}/tests/systems.nix;
  # Every system double and example, in four variants, elaborated ten
  # times over (6,680 elaborations); the attributes that describe each forced.
  describe = e: {{
    inherit (e) config system parsed uname linuxArch qemuArch libc isLinux isDarwin isWindows
      isx86_64 isAarch64 is64bit isStatic useLLVM linker;
    inherit (e.rust) rustcTarget;
  }};
  inputs = map (system: {{ inherit system; }}) lib.systems.doubles.all
    ++ builtins.attrValues lib.systems.examples;
  variants = i: [ i (i // {{ useLLVM = true; }}) (i // {{ isStatic = true; }}) (i // {{ linker = "gold"; }}) ];
  copies = i: builtins.genList (k: i // {{ rixBenchCopy = k; }}) 10;
  elaborated = map (i: describe (lib.systems.elaborate i))
    (builtins.concatMap copies (builtins.concatMap variants inputs));
in builtins.deepSeq elaborated tests
""")
    workloads = {
        "misc": instantiate_workload(os.path.join(lib, "tests", "misc.nix")),
        "systems": instantiate_workload(systems),
        "modules.sh": modules_sh(os.path.join(lib, "tests")),
    }
    for n in (500, 5000):
        d = os.path.join(work, f"modules{n}")
        subprocess.run([sys.executable, gen, str(n), d], check=True)
        workloads[f"modules{n}"] = instantiate_workload(
            os.path.join(d, "default.nix"), ["--arg", "lib", f"import {lib}"])
    chosen = sys.argv[1:] or list(workloads)
    print(f"{RUNS} runs each; CPU = user + system seconds; RSS = peak of the largest process")
    for name in chosen:
        make = workloads[name]
        cpu = {t: [] for t in tools}
        rss = {t: [] for t in tools}
        outputs = {}
        failed = {}
        for i in range(RUNS):
            for tool, argv in tools.items():
                if tool in failed:
                    continue
                scratch = tempfile.mkdtemp(prefix=f"{tool}-{i}-", dir=work)
                cmd, cwd, env = make(argv, scratch)
                code, out, err, c, m = run(cmd, cwd or scratch, env)
                if code != 0:
                    if tool == "rix":
                        print(f"{name}: rix failed ({code}):\n{err.decode(errors='replace')[-2000:]}")
                        sys.exit(1)
                    # Nix 2.8 cannot load today's nixpkgs lib (builtins.readFileType).
                    failed[tool] = err.decode(errors="replace").strip().splitlines()[0]
                    continue
                outputs[tool] = out
                cpu[tool].append(c)
                rss[tool].append(m)
        if name != "modules.sh" and len(set(outputs.values())) > 1:
            print(f"{name}: the tools print different values: {outputs}")
        ok = [t for t in tools if t not in failed]
        med = {t: statistics.median(u + s for u, s in cpu[t]) for t in ok}
        user = {t: statistics.median(u for u, _ in cpu[t]) for t in ok}
        mem = {t: statistics.median(rss[t]) / 1024 for t in ok}
        line = ", ".join(f"{t} {med[t]:.3f} s (user {user[t]:.3f}) {mem[t]:.0f} MiB" for t in ok)
        line += "".join(f", {t} fails ({why})" for t, why in failed.items())
        ratio = ""
        if "nix-2.26" in med:
            ratio = (
                f"; Nix 2.26 / rix: CPU {med['nix-2.26'] / med['rix']:.2f}x"
                f" (user {user['nix-2.26'] / user['rix']:.2f}x), RSS {mem['nix-2.26'] / mem['rix']:.2f}x"
            )
        print(f"{name}: {line}{ratio}", flush=True)


if __name__ == "__main__":
    main()
