"""The synthetic closure: planned here, built by the real nix, cached across benchmark runs.

Shape (for ``paths`` store paths and ``total`` bytes of files):

* 60 % of the paths are small (1-100 KiB, a handful of files),
* ~2 % are big (20-100 MiB, scaled down when the whole closure is small),
* the rest are medium (100 KiB-8 MiB, log-uniform) and take what is left of the budget,
* half of all bytes are compressible text, half random bytes,
* each path references 0-4 earlier ones; a top path references every path nobody else does.

Every byte is derived from a seed, so the same parameters give the same derivations and the
same output paths: a rerun finds them valid in /nix/store and builds nothing.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.nixconf import isolated_nix_env

BENCH = Path(__file__).resolve().parent
GEN_SCRIPT = BENCH / "gen_path.py"
GEN_VERSION = 1  # bump when the plan or gen_path.py changes shape

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class ClosureSpec:
    paths: int = 400
    total: int = 1 * GiB
    seed: int = 1

    @property
    def key(self) -> str:
        # The builder script is part of every derivation: a change to it is a new closure.
        gen = hashlib.sha256(GEN_SCRIPT.read_bytes()).hexdigest()[:8]
        return f"{self.paths}p-{self.total // MiB}MiB-s{self.seed}-v{GEN_VERSION}-{gen}"


@dataclass
class PlannedPath:
    name: str
    files: list[tuple[str, int]]
    deps: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(s for _, s in self.files)


def _loguniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def plan(spec: ClosureSpec) -> list[PlannedPath]:
    rng = random.Random(spec.seed)
    n = spec.paths - 1  # the top path is extra
    n_big = max(1, round(n * 0.02))
    n_small = round(n * 0.6)
    n_mid = n - n_big - n_small
    small = [int(_loguniform(rng, 1 * KiB, 100 * KiB)) for _ in range(n_small)]
    big = [rng.uniform(20 * MiB, 100 * MiB) for _ in range(n_big)]
    if sum(big) > spec.total * 0.45:
        big = [b * spec.total * 0.45 / sum(big) for b in big]
    mid_raw = [_loguniform(rng, 100 * KiB, 8 * MiB) for _ in range(n_mid)]
    budget = max(spec.total - sum(small) - sum(big), n_mid * 100 * KiB)
    mid = [m * budget / sum(mid_raw) for m in mid_raw] if mid_raw else []
    sizes = [("small", int(s)) for s in small] + [("mid", int(m)) for m in mid] + \
        [("big", int(b)) for b in big]
    rng.shuffle(sizes)

    balance = {"t": 0, "r": 0}  # bytes so far, to keep text and random at half each

    def behind() -> str:
        return "t" if balance["t"] <= balance["r"] else "r"

    def small_files(amount: int, limit: int) -> list[tuple[str, int]]:
        files: list[tuple[str, int]] = []
        while amount > 0 and len(files) < limit:
            size = min(amount, int(_loguniform(rng, 256, 64 * KiB)))
            if len(files) == limit - 1:
                size = amount
            kind = behind()
            balance[kind] += size
            files.append((kind, size))
            amount -= size
        return files

    paths: list[PlannedPath] = []
    for i, (cls, size) in enumerate(sizes):
        files: list[tuple[str, int]] = []
        if cls == "small":
            files = small_files(size, 8)
        else:
            # Most of the bytes in one text and one random file, the rest in small files.
            share = 0.4 if cls == "big" else 0.3
            for kind in ("t", "r"):
                files.append((kind, int(size * share)))
                balance[kind] += int(size * share)
            files += small_files(size - 2 * int(size * share), 64 if cls == "big" else 32)
        deps = sorted(rng.sample(range(i), min(i, rng.randint(0, 4)))) if i else []
        paths.append(PlannedPath(f"bench-{cls}-{i:03d}", files, deps))
    used = {d for p in paths for d in p.deps}
    paths.append(PlannedPath("bench-closure-top", [("t", 2 * KiB)],
                             [i for i in range(len(paths)) if i not in used]))
    return paths


def nix_expression(spec: ClosureSpec, planned: list[PlannedPath]) -> str:
    lines = [
        "let",
        f'  gen = builtins.readFile "{GEN_SCRIPT}";',
        "  mk = name: spec: refs: derivation {",
        "    inherit name spec refs gen;",
        "    system = builtins.currentSystem;",
        '    builder = "/bin/sh";',
        '    args = [ "-c" "exec python3 -c \\"$gen\\"" ];',
        '    PATH = "/usr/bin:/bin";',
        "  };",
    ]
    for i, p in enumerate(planned[:-1]):
        files = ",".join(f"{k}:{s}" for k, s in p.files)
        deps = " ".join(f"p{d}" for d in p.deps)
        lines.append(f'  p{i} = mk "{p.name}" "{spec.seed * 100003 + i};{files}" [ {deps} ];')
    top = planned[-1]
    files = ",".join(f"{k}:{s}" for k, s in top.files)
    lines.append("in")
    lines.append(f'  mk "{top.name}" "{spec.seed};{files}" '
                 f'[ {" ".join(f"p{d}" for d in top.deps)} ]')
    return "\n".join(lines) + "\n"


@dataclass
class Closure:
    spec: ClosureSpec
    top: str
    paths: list[str]
    nar_bytes: int
    build_seconds: float

    @property
    def hashes(self) -> list[str]:
        return [Path(p).name[:32] for p in self.paths]


def _query(top: str) -> tuple[list[str], int]:
    env = isolated_nix_env()
    paths = subprocess.run(["nix-store", "-qR", top], capture_output=True, text=True,
                           check=True, env=env).stdout.split()
    sizes = subprocess.run(["nix-store", "-q", "--size", *paths], capture_output=True,
                           text=True, check=True, env=env).stdout.split()
    return sorted(paths), sum(int(s) for s in sizes)


def _recorded(results: Path, key: str) -> str | None:
    record = results / "closure.txt"
    if not record.exists():
        return None
    for line in record.read_text().splitlines():
        k, _, top = line.partition(" ")
        if k == key and top:
            return top
    return None


def _record(results: Path, key: str, top: str) -> None:
    record = results / "closure.txt"
    kept = [line for line in (record.read_text().splitlines() if record.exists() else [])
            if not line.startswith(key + " ")]
    record.write_text("\n".join([*kept, f"{key} {top}"]) + "\n")


def build(spec: ClosureSpec, results: Path, log: Callable[[str], None] = print) -> Closure:
    """The closure for ``spec``: from bench/results/closure.txt if still valid, else built."""
    import time

    results.mkdir(parents=True, exist_ok=True)
    env = isolated_nix_env()
    top = _recorded(results, spec.key)
    gcroot = results / f"closure-{spec.key}"
    if top and subprocess.run(["nix-store", "--check-validity", top], env=env,
                              capture_output=True).returncode == 0 and gcroot.exists():
        paths, nar = _query(top)
        log(f"closure {spec.key}: cached, {len(paths)} paths, {nar / MiB:.0f} MiB of NAR")
        return Closure(spec, top, paths, nar, 0.0)
    planned = plan(spec)
    expr = results / f"closure-{spec.key}.nix"
    expr.write_text(nix_expression(spec, planned))
    log(f"closure {spec.key}: building {len(planned)} paths, "
        f"{sum(p.size for p in planned) / MiB:.0f} MiB of files with nix ...")
    t0 = time.monotonic()
    proc = subprocess.run(["nix-build", str(expr), "--out-link", str(gcroot),
                           "--max-jobs", str(os.cpu_count() or 1), "--quiet"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"nix-build failed:\n{proc.stderr[-4000:]}")
    top = proc.stdout.strip().splitlines()[-1]
    seconds = time.monotonic() - t0
    _record(results, spec.key, top)
    paths, nar = _query(top)
    log(f"closure {spec.key}: built in {seconds:.0f} s, {len(paths)} paths, "
        f"{nar / MiB:.0f} MiB of NAR")
    return Closure(spec, top, paths, nar, seconds)


def file_cache(closure: Closure, results: Path, secret_key: Path,
               log: Callable[[str], None] = print) -> Path:
    """A ``file://`` binary cache of the closure (zstd, signed), made once per closure."""
    directory = results / f"filecache-{closure.spec.key}"
    stamp = directory / ".complete"
    if stamp.exists() and stamp.read_text() == closure.top + "\n" + secret_key.read_text():
        return directory
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log(f"file:// cache: nix copy --to file://{directory}?compression=zstd ...")
    home = results / "work" / "nix-filecache-home"
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run(["nix", "copy", "--to",
                    f"file://{directory}?compression=zstd&secret-key={secret_key}",
                    closure.top],
                   check=True, env=isolated_nix_env(home), capture_output=True)
    stamp.write_text(closure.top + "\n" + secret_key.read_text())
    return directory


def signing_key(results: Path) -> tuple[Path, str]:
    """A binary-cache key pair for signing the file:// cache (made once)."""
    secret, public = results / "nginx-cache.sec", results / "nginx-cache.pub"
    if not (secret.exists() and public.exists()):
        subprocess.run(["nix-store", "--generate-binary-cache-key", "bench-nginx-1",
                        str(secret), str(public)], check=True, env=isolated_nix_env(),
                       capture_output=True)
    return secret, public.read_text().strip()
