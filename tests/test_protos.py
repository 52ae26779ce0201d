"""Generated code must match protos/: a stale checkout fails here, not at run time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_generated_code_is_up_to_date_with_the_proto_files(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "tools/gen_protos.py", "--check"], cwd=repo_root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
