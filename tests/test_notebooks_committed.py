"""The notebooks are committed executed: nbval compares against the stored outputs, and a
notebook stored without them passes nbval while checking nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_code_cell_was_executed_in_order(path: Path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    counts = [c.get("execution_count") for c in cells]
    assert None not in counts, f"{path.name}: cells never executed; re-run it and commit it"
    assert counts == sorted(counts), f"{path.name}: cells executed out of order"
    assert any(c.get("outputs") for c in cells), f"{path.name}: stored without outputs"
