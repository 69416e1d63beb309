"""Size budgets (``docs/STYLE.md``, habit 11): files stay under 500 lines, and the RL
algorithms and the trainer read top to bottom in functions of at most 80 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_file_is_over_500_lines():
    files = _python_files("robopolicy", "sim", "hardware", "apps", "scripts", "tests")
    assert len(files) > 50
    lengths = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    over = [f"{p.relative_to(ROOT)}: {n}" for p, n in lengths.items() if n > MAX_FILE_LINES]
    assert not over, over


def test_no_function_of_the_rl_algorithms_or_the_trainer_is_over_80_lines():
    over = []
    for path in _python_files("robopolicy/rl", "robopolicy/train"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    over.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert not over, over


def test_the_design_documents_cited_by_the_code_are_in_the_repository():
    """A clone stands alone: code cites ``docs/*.md``, never a folder beside the repository."""
    cited, outside = set(), []
    for path in _python_files("robopolicy", "sim", "hardware", "apps", "scripts", "tests"):
        text = path.read_text(encoding="utf-8")
        cited.update(re.findall(r"docs/([A-Z]+\.md)", text))
        if re.search(r"\.\./shared/[A-Z]+\.md", text):
            outside.append(str(path.relative_to(ROOT)))
    assert {"DESIGN.md", "RELIABILITY.md"} <= cited
    assert not outside, outside
    assert all((ROOT / "docs" / name).is_file() for name in cited), cited
