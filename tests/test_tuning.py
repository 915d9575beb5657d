"""Equal tuning (hashnb.tuning, `bench tune`): seeded, reproducible, validation only, resumable."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("optuna")

from hashnb.matrix import run_matrix  # noqa: E402
from hashnb.methods import list_methods  # noqa: E402
from hashnb.tuning import COMMON, SPACES, load_tuned, tune_method  # noqa: E402

TINY = dict(bits=8, trials=3, max_epochs=4, patience=2, seed=0)


def _values(rec):
    return [(t["params"], t["value"]) for t in rec["history"]]


def test_every_trained_method_has_a_space_over_its_own_arguments():
    from hashnb.methods.registry import check_method_args, constructor_parameters

    trained = {m for m in list_methods() if m not in ("lsh", "itq")}
    assert set(SPACES) == trained
    for name, space in SPACES.items():
        params = constructor_parameters(check_method_args(name, {}))
        assert set(space) <= set(params), (name, set(space) - set(params))
    assert set(COMMON) == {"lr", "weight_decay"}


def test_tiny_search_is_seeded_and_reproducible(digits, tmp_path):
    ds, split = digits
    a = tune_method("csq", ds, split, storage_dir=tmp_path / "a", **TINY)
    b = tune_method("csq", ds, split, storage_dir=tmp_path / "b", **TINY)
    assert len(a["history"]) == 3 and _values(a) == _values(b)
    assert a["tuned"] == b["tuned"] and a["best"]["val_map"] == b["best"]["val_map"]
    assert set(a["tuned"]["method_kwargs"]) == set(SPACES["csq"])
    assert a["tuned"]["epochs"] == 4 and a["tuned"]["patience"] == 2
    other = tune_method("csq", ds, split, storage_dir=tmp_path / "c", **{**TINY, "seed": 1})
    assert _values(other) != _values(a)


def test_score_is_the_best_validation_map_never_the_query_set(digits, tmp_path, monkeypatch):
    """Every item a trial encodes is a validation or training item; its value is the best
    validation mAP of its run."""
    import hashnb.train

    ds, split = digits
    outside = set(split.query.tolist()) | set(split.database.tolist())
    outside -= set(split.train.tolist()) | set(split.val.tolist())
    seen = []

    def guarded(fn):
        def wrapper(method, dataset, indices, **kw):
            seen.append(len(indices))
            assert not outside & set(map(int, indices)), "tuning looked at held-out items"
            return fn(method, dataset, indices, **kw)
        return wrapper

    monkeypatch.setattr(hashnb.train, "encode_dataset", guarded(hashnb.train.encode_dataset))
    monkeypatch.setattr(hashnb.train, "codes_for", guarded(hashnb.train.codes_for))
    rec = tune_method("dpsh", ds, split, storage_dir=tmp_path, **{**TINY, "trials": 2})
    assert seen and outside  # the guard ran, and there are held-out items to protect
    for t in rec["history"]:
        assert 0 < t["value"] <= 1 and t["epochs_run"] <= 4
    assert rec["best"]["val_map"] == max(t["value"] for t in rec["history"])


def test_interrupted_tuning_resumes_and_extends(digits, tmp_path):
    ds, split = digits
    first = tune_method("csq", ds, split, storage_dir=tmp_path, **{**TINY, "trials": 2})
    more = tune_method("csq", ds, split, storage_dir=tmp_path, **TINY)  # 3 trials in all
    assert _values(more)[:2] == _values(first) and len(more["history"]) == 3
    same = tune_method("csq", ds, split, storage_dir=tmp_path, **TINY)  # nothing left to run
    assert _values(same) == _values(more)


def test_unknown_method_is_refused(digits):
    ds, split = digits
    with pytest.raises(ValueError, match="no search space for 'lsh'"):
        tune_method("lsh", ds, split, **TINY)


def test_bench_run_trains_with_the_tuned_configuration(digits, tmp_path):
    ds, split = digits
    rec = tune_method("csq", ds, split, storage_dir=tmp_path / "s", **TINY)
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / "csq.json").write_text(json.dumps(rec))
    tuned = load_tuned(tmp_path / "tuned")
    (res,) = run_matrix(["csq"], [8], [0], dataset=ds, out=tmp_path / "out", tuned=tuned,
                        progress=False)
    assert res["tuned"] == rec["tuned"]
    assert res["request"]["lr"] == rec["tuned"]["lr"]
    assert res["request"]["method_kwargs"] == rec["tuned"]["method_kwargs"]
    assert res["request"]["fit"]["patience"] == 2 and res["epochs"] == 4
    with pytest.raises(FileNotFoundError, match="bench tune"):
        load_tuned(tmp_path / "empty")


def test_a_changed_default_starts_a_new_study(digits, tmp_path, monkeypatch):
    # CRH's codebook default changed in issue 13: a study of the old default must not be
    # resumed as if it were the new one
    from hashnb.methods.crh import CRH

    ds, split = digits
    first = tune_method("crh", ds, split, storage_dir=tmp_path, **{**TINY, "trials": 1})
    hparams = CRH.hparams
    monkeypatch.setattr(CRH, "hparams", lambda self: {**hparams(self), "codebook": "random"})
    second = tune_method("crh", ds, split, storage_dir=tmp_path, **{**TINY, "trials": 1})
    assert second["study"] != first["study"]
    assert len(list(tmp_path.glob("*.log"))) == 2
