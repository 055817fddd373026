"""Build step: the REAPI and ByteStream modules are generated from src/flywheel/bazel/protos
when the package is built or installed (editable installs included), typed by mypy-protobuf.

No generated code is committed, and the server imports nothing at run time to compile
protos. The generator is pinned in pyproject's build requirements, and the protobuf and
grpcio runtimes are required at least at the versions whose code it emits."""

from __future__ import annotations

import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTOS = ROOT / "src" / "flywheel" / "bazel" / "protos"
OUT = ROOT / "src" / "flywheel" / "bazel" / "_generated"
PACKAGE = "flywheel.bazel._generated"
# The protos keep their upstream paths (gRPC method names come from their packages); their
# modules are moved under our package, so "build" (also a PyPI package) and "google.rpc"
# (also googleapis-common-protos) never clash on import.
_OURS = r"(build\.bazel|google\.(?:rpc|bytestream))"


def _plugin(directory: Path, name: str, function: str) -> Path:
    """protoc runs plugins as programs; this one runs mypy-protobuf in this interpreter."""
    path = directory / f"protoc-gen-{name}"
    path.write_text(f"#!{sys.executable}\nfrom mypy_protobuf.main import {function}\n"
                    f"{function}()\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _relocate(path: Path) -> None:
    text = path.read_text()
    if path.suffix == ".py":
        # Only the import lines: the serialized descriptors name the proto packages too.
        text = re.sub(rf"^from {_OURS}\b", rf"from {PACKAGE}.\1", text, flags=re.M)
    else:
        text = re.sub(rf"\b{_OURS}\b", rf"{PACKAGE}.\1", text)
    path.write_text(text)


def generate() -> None:
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        plugins = Path(tmp)
        args = ["protoc", f"-I{PROTOS}", f"-I{Path(protoc.__file__).parent / '_proto'}",
                f"--python_out={OUT}", f"--grpc_python_out={OUT}", f"--mypy_out={OUT}",
                f"--mypy_grpc_out={OUT}",
                f"--plugin=protoc-gen-mypy={_plugin(plugins, 'mypy', 'main')}",
                f"--plugin=protoc-gen-mypy_grpc={_plugin(plugins, 'mypy_grpc', 'grpc')}",
                *protos]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
    for path in OUT.rglob("*_pb2_grpc.py*"):
        if "class " not in path.read_text():  # a proto without services
            path.unlink()
    for path in OUT.rglob("*.py*"):
        _relocate(path)
    for directory in [OUT, *(d for d in OUT.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()
    (OUT / "py.typed").touch()


class BuildPy(build_py):
    def run(self) -> None:
        generate()
        # Packages were listed before the generated ones existed.
        self.packages = sorted({*(self.packages or ()),
                                *find_packages(str(ROOT / "src"), include=[f"{PACKAGE}*"])})
        super().run()


setup(cmdclass={"build_py": BuildPy})
