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
    import hashnb.matrix

    def boom(*a, **k):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr(hashnb.matrix, "run_method", boom)  # what run_matrix calls
    again = matrix.run_matrix(["lsh", "itq"], [8, 16], [0, 1], dataset="digits", out=out,
                              progress=False)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in res]

    table = matrix.summarize(matrix.load_results(out))
    itq16 = [r["metrics"]["map"] for r in res if r["method"] == "itq" and r["bits"] == 16]
    cell = table.loc[("digits", "digits", "itq"), 16]
    assert cell == f"{np.mean(itq16):.3f} ± {np.std(itq16, ddof=1):.3f} (2)"
    one = matrix.summarize([r for r in res if r["seed"] == 0])
    assert one.loc[("digits", "digits", "itq"), 16] == f"{itq16[0]:.3f} (1)"  # no fake ± 0


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


def test_profiles_resolve_and_cli_overrides():
    from hashnb.bench import build_parser, resolve_profile

    parser = build_parser()
    a = parser.parse_args(["run", "--profile", "cpu", "--out", "x"])
    kw = resolve_profile(a)
    assert kw["dataset"] == "cifar10" and kw["protocol"] == "cifar10"
    assert kw["bits"] == [8, 16, 32, 64] and kw["seeds"] == [0, 1, 2, 3, 4]
    assert kw["features"] == {"backbone": "tf_efficientnet_lite0", "input_size": 128}
    from hashnb.methods import list_methods
    from hashnb.methods.registry import parse_method_spec
    # every registered method is in the cpu profile (closed-form ones too), plus the twins
    assert {parse_method_spec(m)[0] for m in kw["methods"]} == set(list_methods())
    assert {"crh:reassign=none", "mlh:branches=center", "mlh:experts=0"} <= set(kw["methods"])
    # the committed tuned configurations are used, every trained method has one
    trained = {m for m in list_methods() if m not in ("lsh", "itq")}
    assert trained <= set(kw["tuned"]) and all(kw["tuned"][m]["val_every"] == 1 for m in trained)
    off = resolve_profile(parser.parse_args(["run", "--profile", "cpu", "--tuned", "none",
                                             "--out", "x"]))
    assert "tuned" not in off
    pool = resolve_profile(parser.parse_args(["run", "--profile", "cpu-pool", "--out", "x"]))
    assert pool["protocol"] == "cifar10-1" and pool["extra_bits"] == {"mah:pool=database": [4, 6, 12]}
    b = parser.parse_args(["run", "--profile", "gpu", "--methods", "csq", "--bits", "16",
                           "--seeds", "5", "--input-size", "96", "--out", "x"])
    kw = resolve_profile(b)
    assert kw["methods"] == ["csq"] and kw["bits"] == [16] and kw["seeds"] == [5]
    assert kw["finetune"]["input_size"] == 96 and kw["finetune"]["pretrained"] is True
    assert "features" not in kw and kw["extra_bits"] is None
    with pytest.raises(SystemExit, match="--profile"):
        resolve_profile(parser.parse_args(["run", "--out", "x"]))


def test_finetune_path_trains_the_backbone_end_to_end(cache):
    # the gpu profile's code path, on a tiny image set with a small CNN on the CPU
    from hashnb.data import HashingDataset

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    x = (rng.random((60, 16, 16, 3)) * 60 + y[:, None, None, None] * 60).astype(np.uint8)
    ds = HashingDataset("toy-images", x, np.eye(3, dtype=np.float32)[y],
                        ["a", "b", "c"], kind="image")
    out = cache / "ft"
    res = matrix.run_matrix(["csq"], [8], [0], dataset=ds, protocol="random", out=out,
                            split_kwargs={"n_query": 9, "n_train": 30, "cache": False}, epochs=2, progress=False,
                            finetune={"backbone": "small_cnn", "pretrained": False,
                                      "input_size": 24, "batch_size": 16})
    rec = res[0]
    assert rec["features"]["finetune"] is True and rec["features"]["input_size"] == 24
    assert rec["method_kwargs"]["backbone"] == "small_cnn"
    assert 0.0 <= rec["metrics"]["map"] <= 1.0 and rec["epochs"] == 2
    with pytest.raises(ValueError, match="needs an image dataset"):
        matrix.run_matrix(["csq"], [8], [0], dataset="digits", out=out, finetune={"input_size": 8},
                          progress=False)


def test_markdown_report_is_deterministic_and_matches_summary(cache):
    out = cache / "res"
    res = matrix.run_matrix(["lsh", "itq"], [8, 16], [0, 1], dataset="digits", out=out,
                            progress=False)
    md = matrix.markdown_report(matrix.load_results(out))
    assert md == matrix.markdown_report(list(reversed(res)))  # order of records irrelevant
    table = matrix.summarize(res)
    assert f"| itq | {table.loc[('digits', 'digits', 'itq'), 8]} |" in md
    assert "### map@1000" in md and "seeds 0, 1" in md
    with pytest.raises(ValueError):
        matrix.markdown_report([])


def test_train_throughput_times_every_method_on_the_same_split(cache):
    out = matrix.train_throughput(["lsh", "csq", "dpsh"], dataset="digits", bits=16, epochs=2,
                                  progress=False)
    rows = {r["method"]: r for r in out["results"]}
    assert out["config"]["train"] == 450 and out["config"]["epochs"] == 2
    assert rows["lsh"]["samples_per_s"] is None           # closed form: no epochs to time
    for m in ("csq", "dpsh"):
        assert rows[m]["epochs"] == 2 and rows[m]["samples_per_s"] > 0
        # throughput is over the epochs' own time: 2 x 450 items / that time
        assert rows[m]["samples_per_s"] == pytest.approx(2 * 450 / rows[m]["seconds"])


# ------------------------------------------------------------------ paired twin statistics
def _fake(method, bits, seed, value, split="s"):
    return {"dataset": "d", "protocol": "p", "method": method, "bits": bits, "seed": seed,
            "metrics": {"map": value}, "request": {"split": f"{split}{seed}"}}


def test_paired_comparison_matches_scipy_and_a_slow_bootstrap():
    from scipy import stats

    from hashnb.matrix import paired_comparison

    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 0.7, 5), rng.uniform(0.5, 0.7, 5)
    res = [_fake("x", 16, s, a[s]) for s in range(5)] + [_fake("y", 16, s, b[s]) for s in range(5)]
    res.append(_fake("x", 32, 0, 0.6))  # one seed only at 32 bits: left out
    tab = paired_comparison(res, "x", "y", n_boot=2000, seed=3)
    assert tab["bits"].tolist() == [16]
    row = tab.iloc[0]
    ref = stats.ttest_rel(a, b)
    assert row["t"] == pytest.approx(ref.statistic) and row["p"] == pytest.approx(ref.pvalue)
    assert row["diff"] == pytest.approx((a - b).mean()) and row["n"] == 5
    # the bootstrap against a loop over resamples with the same random stream
    g = np.random.default_rng(3)
    idx = g.integers(0, 5, size=(2000, 5))
    means = [float(np.mean([(a - b)[i] for i in row_i])) for row_i in idx]
    assert row["ci_low"] == pytest.approx(np.quantile(means, 0.025))
    assert row["ci_high"] == pytest.approx(np.quantile(means, 0.975))
    assert row["significant"] == (ref.pvalue < 0.05)


def test_paired_comparison_pairs_by_seed_and_refuses_different_splits():
    from hashnb.matrix import paired_comparison

    # a constant paired gain is significant even when the seeds vary a lot
    base = [0.3, 0.6, 0.45, 0.5, 0.7]
    res = [_fake("x", 8, s, v + 0.01 + 1e-4 * s) for s, v in enumerate(base)]
    res += [_fake("y", 8, s, v) for s, v in enumerate(base)]
    row = paired_comparison(res, "x", "y").iloc[0]
    assert row["significant"] and row["ci_low"] > 0 and row["diff"] == pytest.approx(0.0102)
    bad = res[:-1] + [_fake("y", 8, 4, 0.7, split="other")]
    with pytest.raises(ValueError, match="different splits"):
        paired_comparison(bad, "x", "y")


def test_markdown_report_has_a_twin_section_when_twins_are_present():
    from hashnb.matrix import markdown_report

    res = []
    for s in range(3):
        for m, v in (("crh", 0.6 + 0.01 * s), ("crh:reassign=none", 0.58 + 0.012 * s)):
            r = _fake(m, 16, s, v)
            r["metrics"].update({"map@1000": v, "p@r2": v})
            r.update(selection="best", split_sizes={}, features={})
            res.append(r)
    text = markdown_report(res)
    assert "## Twins" in text and "### crh vs crh:reassign=none" in text
    assert markdown_report([r for r in res if r["method"] == "crh"]).count("Twins") == 0


def test_twin_table_stacks_every_present_pair_with_its_paired_statistics():
    from hashnb.matrix import TWINS, paired_comparison, twin_table

    res = [_fake("mlh", b, s, 0.6 + 0.01 * s + 0.001 * b) for b in (16, 32) for s in range(4)]
    res += [_fake("mlh:experts=0", b, s, 0.59 + 0.012 * s) for b in (16, 32) for s in range(4)]
    res += [_fake("crh", 8, s, 0.5 + 0.02 * s) for s in range(4)]  # its twin is missing
    tab = twin_table(res)
    assert tab["pair"].tolist() == ["mlh vs mlh:experts=0"] * 2 and tab["bits"].tolist() == [16, 32]
    assert tab["removes"].iloc[0] == next(w for a, b, w in TWINS if b == "mlh:experts=0")
    ref = paired_comparison(res, "mlh", "mlh:experts=0")
    assert tab["diff"].tolist() == ref["diff"].tolist() and tab["p"].tolist() == ref["p"].tolist()
    assert tab["method"].tolist() == ref["mlh"].tolist()
    assert twin_table([r for r in res if r["method"] == "crh"]).empty


def test_floor_checks_read_the_means_and_flag_a_drop_from_32_to_64_bits():
    from hashnb.matrix import floor_checks

    res = []
    for s in range(3):
        res += [_fake("dpsh", 64, s, 0.63 + 0.001 * s), _fake("hashnet", 64, s, 0.61),
                _fake("csq", 16, s, 0.55), _fake("csq", 32, s, 0.60 + 0.001 * s),
                _fake("csq", 64, s, 0.55 + 0.002 * s)]
        r = _fake("mah:pool=database", 8, s, 0.74)
        r["protocol"] = "cifar10-1"
        res.append(r)
    for r in res:
        if r["protocol"] == "p":
            r["protocol"] = "cifar10"
    tab = floor_checks(res).set_index("check")
    assert tab.loc["dpsh 64 bits >= 0.62", "met"] and tab.loc["dpsh 64 bits >= 0.62", "measured"] == pytest.approx(0.631)
    assert tab.loc["hashnet 64 bits >= 0.62", "met"] is False or not tab.loc["hashnet 64 bits >= 0.62", "met"]
    assert tab.loc["mah 8 bits (cifar10-1, database as pool) >= csq 16 bits (cifar10)", "met"]
    assert tab.loc["mlh 64 bits >= 0.615", "met"] is None  # no MLH result: unknown, not failed
    drop = [c for c in tab.index if c.startswith("csq: 64 bits")]
    assert len(drop) == 1 and not tab.loc[drop[0], "met"]  # 0.60 -> 0.55, every seed


def test_pending_cells_lists_incomplete_groups_of_the_profile():
    from hashnb.matrix import PROFILES, pending_cells

    prof = PROFILES["cpu-pool"]
    res = [_fake("adsh:pool=database", b, s, 0.5) for b in prof["bits"] for s in prof["seeds"]]
    res += [_fake("mah:pool=database", 8, s, 0.5) for s in prof["seeds"][:-1]]  # one seed short
    cells = pending_cells(res, "cpu-pool")
    assert ["mah:pool=database", 8] in cells and ["mah:pool=database", 4] in cells
    assert not any(m == "adsh:pool=database" for m, _ in cells)
    assert len(cells) == 7  # MAH at 4, 6, 8, 12, 16, 32, 64 bits
