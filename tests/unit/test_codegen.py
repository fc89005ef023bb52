"""The committed models in common/models/ are exactly what codegen produces from common/schemas/."""

import filecmp
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_models_match_schemas(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "codegen" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path / "models")
    committed = ROOT / "common" / "models"
    fresh = sorted(p.name for p in (tmp_path / "models").glob("*.py"))
    assert fresh == sorted(p.name for p in committed.glob("*.py")), "generated module set differs"
    drift = [name for name in fresh if not filecmp.cmp(committed / name, tmp_path / "models" / name, shallow=False)]
    assert not drift, f"common/models drifted from common/schemas: {drift}; run `make codegen`"
