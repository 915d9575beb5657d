"""The benchmark matrix runner: one JSON per result with provenance, resume, report."""
import json

import numpy as np
import pytest

from hashnb import matrix


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_run_matrix_writes_provenance_resumes_and_summarizes(cache, monkeypatch):
    out = cache / "res"
    res = matrix.run_matrix(["lsh", "itq"], [8, 16], [0, 1], dataset="digits", out=out,
                            progress=False)
    files = sorted(out.glob("*.json"))
    assert len(files) == len(res) == 8
    rec = json.loads(files[0].read_text())
    for key in ("commit", "cpu", "versions", "dataset", "protocol", "split_sizes", "method",
                "bits", "seed", "epochs", "selection", "wall_seconds", "metrics",
                "metric_convention"):
        assert key in rec, key
    assert set(rec["metrics"]) >= {"map", "map@1000", "p@1000", "p@r2", "map_ties_index"}
    assert rec["protocol"] == "digits" and rec["split_sizes"]["query"] == 300

    # resume: every cell exists, so nothing is trained again
    import hashnb.train

    def boom(*a, **k):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(hashnb.train, "run_method", boom)
    again = matrix.run_matrix(["lsh", "itq"], [8, 16], [0, 1], dataset="digits", out=out,
                              progress=False)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in res]

    table = matrix.summarize(matrix.load_results(out))
    itq16 = [r["metrics"]["map"] for r in res if r["method"] == "itq" and r["bits"] == 16]
    cell = table.loc[("digits", "digits", "itq"), 16]
    assert cell == f"{np.mean(itq16):.3f} ± {np.std(itq16, ddof=1):.3f} (2)"


def test_method_spec_parsing_and_variant_cells(cache):
    assert matrix.parse_method_spec("csq") == ("csq", {})
    assert matrix.parse_method_spec("crh:reassign=greedy,heads=1,lam=0.5,flag=True") == (
        "crh", {"reassign": "greedy", "heads": 1, "lam": 0.5, "flag": True})
    with pytest.raises(ValueError, match="key=value"):
        matrix.parse_method_spec("csq:oops")
    with pytest.raises(ValueError, match="no method name"):
        matrix.parse_method_spec(":a=1")
    out = cache / "res"
    # two variants of one method are two cells with their own files and labels
    res = matrix.run_matrix(["csq", "csq:center_seed=1,quant_weight=0.5"], [16], [0],
                            dataset="digits", out=out, epochs=2, progress=False)
    assert len(list(out.glob("*.json"))) == 2
    assert [r["method"] for r in res] == ["csq", "csq:center_seed=1,quant_weight=0.5"]
    assert res[1]["method_name"] == "csq" and res[1]["method_kwargs"] == {
        "center_seed": 1, "quant_weight": 0.5}
    assert res[0]["metrics"]["map"] != res[1]["metrics"]["map"]  # the kwarg reached the method
    assert res[0]["train_samples_per_s"] > 0
    with pytest.raises(ValueError, match="unknown argument"):
        matrix.run_matrix(["csq:nonsense=1"], [16], [0], dataset="digits", out=out, epochs=1,
                          progress=False)
