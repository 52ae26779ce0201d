"""Generate Python code, gRPC stubs and mypy stubs for every .proto under protos/.

One generator for the whole repo, with grpcio-tools pinned to the grpcio runtime. Output lands
beside the sources (`protos/checkout/<svc>/v1/*_pb2.py`), so the proto packages match their
directories and generated imports need no rewriting. `--check` regenerates into a temporary
directory and fails when the committed files differ.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools  # type: ignore[import-untyped]
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
BIN = Path(sys.executable).parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{include}",
        # The mypy-protobuf plugins live beside this interpreter; name them so PATH does not matter.
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out=quiet:{out}",
        f"--mypy_grpc_out=quiet:{out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Package markers so `checkout.invoice.v1` imports as a regular package.
    for directory in [p.parent for p in out.rglob("*_pb2.py")]:
        while directory != out:
            (directory / "__init__.py").touch()
            directory = directory.parent


def generated_files(root: Path) -> set[Path]:
    files = {p.relative_to(root) for p in root.rglob("*") if p.name.endswith(GENERATED_SUFFIXES)}
    return files | {p.relative_to(root) for p in root.rglob("__init__.py")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh, committed = generated_files(out), generated_files(PROTOS)
        stale = sorted(str(f) for f in fresh ^ committed)
        stale += sorted(
            str(f) for f in fresh & committed if not filecmp.cmp(out / f, PROTOS / f, shallow=False)
        )
        if check:
            if stale:
                print("generated code is stale; run `make protos`:", *stale, sep="\n  ")
                return 1
            return 0
        for f in committed - fresh:
            (PROTOS / f).unlink()
        for f in fresh:
            (PROTOS / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / f, PROTOS / f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
