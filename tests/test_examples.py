"""The documentation's examples run (small sizes: a smoke test, not a benchmark)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "doc" / "examples"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_plot_sparse_strategies(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location(
        "plot_sparse_strategies", EXAMPLES / "plot_sparse_strategies.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "strategies.png"
    module.main(["--n-samples", "2500", "--out", str(out)])
    printed = capsys.readouterr().out
    for name in ["Ridge", "drop rows", "TruncatedSVD", "SelectKBest",
                 "SparseMLPRegressor", "SparseMLPTransformer + Ridge"]:
        assert name in printed
    assert out.stat().st_size > 10_000  # a real figure was written
