"""Find the repository's examples/ folder and make its scripts importable (gallery helper)."""

import sys
from pathlib import Path


def examples_dir() -> Path:
    for base in (Path.cwd(), *Path.cwd().parents):
        if (base / "examples" / "_common.py").is_file():
            sys.path.insert(0, str(base / "examples"))
            return base / "examples"
    raise SystemExit("run this from a droplab checkout: the examples/ folder was not found")
