"""Builder of one synthetic store path (runs inside a Nix derivation under /usr/bin/python3).

Environment (set by the derivation): ``out``, ``name``, ``spec`` and ``refs``.
``spec`` is ``SEED;KIND:SIZE,KIND:SIZE,...`` with KIND ``t`` (compressible text) or ``r``
(incompressible bytes). Everything is derived from SEED, so a rebuild gives the same bytes.
``refs`` are the store paths this one depends on; they are written into the output, which is
how Nix records them as references.
"""

import os
import random
from typing import BinaryIO

out = os.environ["out"]
name = os.environ["name"]
seed_text, _, files_text = os.environ["spec"].partition(";")
refs = os.environ.get("refs", "").split()
rng = random.Random(int(seed_text))

# Text: lines of fragments picked from a pool of pseudo-word triples. zstd -3 gets about
# 4:1 on it, like source code and documentation; the pool is the same for every path.
pool_rng = random.Random(20240601)
SYLLABLES = ["ba", "ko", "ri", "nu", "te", "lo", "sa", "mi", "zer", "qua", "ex", "on", "ti",
             "vel", "dor", "pan", "fi", "gu", "ham", "jo", "_", "(", ")", "=", "0x", "42"]
WORDS = ["".join(pool_rng.choices(SYLLABLES, k=pool_rng.randint(1, 4))) for _ in range(2000)]
FRAGMENTS = [" ".join(pool_rng.choices(WORDS, k=3)) for _ in range(8192)]


def write_text(f: BinaryIO, size: int) -> None:
    written = 0
    while written < size:
        picks = rng.choices(FRAGMENTS, k=40000)
        block = "\n".join(" ".join(picks[i:i + 4]) for i in range(0, len(picks), 4)) + "\n"
        data = block.encode()[:size - written]
        f.write(data)
        written += len(data)


def write_random(f: BinaryIO, size: int) -> None:
    written = 0
    while written < size:
        n = min(16 << 20, size - written)
        f.write(rng.randbytes(n))
        written += n


data_dir = os.path.join(out, "share", name)
os.makedirs(data_dir)
for i, item in enumerate(x for x in files_text.split(",") if x):
    kind, size = item.split(":")
    path = os.path.join(data_dir, f"file-{i:04d}.{'txt' if kind == 't' else 'bin'}")
    with open(path, "wb") as f:
        (write_text if kind == "t" else write_random)(f, int(size))

os.makedirs(os.path.join(out, "bin"))
tool = os.path.join(out, "bin", name)
with open(tool, "w") as script:
    script.write(f"#!/bin/sh\nexec cat {data_dir}/file-0000.* \"$@\"\n")
os.chmod(tool, 0o755)
os.symlink(f"../share/{name}", os.path.join(out, "bin", "data"))
os.makedirs(os.path.join(out, "nix-support"))
with open(os.path.join(out, "nix-support", "propagated-build-inputs"), "w") as deps:
    deps.write(" ".join(refs) + "\n")
