"""The house rule for core/src: no class over 250 lines, no function over 60 (docs/contributing.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "socketio_delivery"
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60


def _too_long() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                limit = MAX_CLASS_LINES
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit = MAX_FUNCTION_LINES
            else:
                continue
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                where = f"{path.relative_to(SRC)}:{node.lineno}"
                found.append(f"{where} {node.name} is {lines} lines (> {limit})")
    return found


def test_no_class_over_250_lines_and_no_function_over_60() -> None:
    assert _too_long() == []
