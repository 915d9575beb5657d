"""Reliability: no stale cached result, no permanent crash on a damaged file, every bad input
named at the boundary (issue 15). Each test fails on the code before that issue's fixes."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hashnb.data import make_split
from hashnb.methods import create_method, list_methods
from hashnb.train import fit, method_from_dataset, run_method

ROOT = Path(__file__).resolve().parents[1]

# a small, quick configuration per trained method (8 bits; MAH trains 8/16/32 together)
QUICK = {"adsh": {"num_samples": 300, "inner_epochs": 1},
         "mah": {"num_samples": 300, "inner_epochs": 1}}


def _trained_methods():
    return [m for m in list_methods() if create_method(m, bits=8, num_classes=10, in_dim=64).trainable]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))


class _Stop(Exception):
    pass


def _stop_after(epoch):
    def cb(ctx):
        if ctx.epoch == epoch - 1:
            raise _Stop
    return cb


def _with(ds, **changes):
    return dataclasses.replace(ds, **changes)


# --------------------------------------------------------------------------- 1. resume
@pytest.mark.parametrize("name", _trained_methods())
def test_every_method_resumes_to_the_same_codes(name, digits, tmp_path):
    """Interrupted after epoch 2 of 3 and called again: the same history and codes as an
    uninterrupted run (ADSH/MAH used to crash on every retry)."""
    ds, split = digits
    kw = dict(bits=8, seed=1, epochs=3, method_kwargs=QUICK.get(name), root=tmp_path / "runs",
              progress=False, val_every=1)
    full = run_method(name, ds, split, cache=False, **{k: v for k, v in kw.items() if k != "root"})
    with pytest.raises(_Stop):
        run_method(name, ds, split, callbacks=[_stop_after(2)], **kw)
    (ck,) = (tmp_path / "runs").glob("*/checkpoint.pt")
    resumed = run_method(name, ds, split, **kw)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history])
    assert torch.equal(resumed.codes("query"), full.codes("query"))
    assert torch.equal(resumed.codes("database"), full.codes("database"))
    assert not ck.exists()


# --------------------------------------------------------------------------- 2. data content
def test_run_cache_keys_on_the_data_content(digits, tmp_path):
    ds, split = digits
    a = run_method("itq", ds, split, bits=16, root=tmp_path)
    noisy = _with(ds, x=ds.x + np.random.default_rng(0).normal(0, 4, ds.x.shape).astype(np.float32))
    b = run_method("itq", noisy, split, bits=16, root=tmp_path)
    fresh = run_method("itq", noisy, split, bits=16, cache=False)
    assert b.run_dir != a.run_dir
    assert torch.equal(b.codes("query"), fresh.codes("query"))
    assert not torch.equal(b.codes("query"), a.codes("query"))
    relabelled = _with(ds, labels=np.roll(ds.labels, 1, axis=1))
    c = run_method("itq", relabelled, split, bits=16, root=tmp_path)
    assert c.run_dir not in (a.run_dir, b.run_dir)


def test_a_changed_default_is_a_new_run(digits, tmp_path, monkeypatch):
    """epochs=None resolves to the method's default inside the key."""
    from hashnb.methods.csq import CSQ

    ds, split = digits
    monkeypatch.setattr(CSQ, "default_epochs", 1)
    a = run_method("csq", ds, split, bits=8, root=tmp_path, progress=False)
    monkeypatch.setattr(CSQ, "default_epochs", 2)
    b = run_method("csq", ds, split, bits=8, root=tmp_path, progress=False)
    assert a.run_dir != b.run_dir and len(b.history) == 2


# --------------------------------------------------------------------------- 3. bench resume
def test_bench_run_never_reuses_a_result_of_another_configuration(tmp_path):
    from hashnb.matrix import run_matrix

    out = tmp_path / "res"
    kw = dict(dataset="digits", out=out, progress=False)
    (r1,) = run_matrix(["csq"], [8], [0], epochs=1, **kw)
    (path,) = out.glob("*.json")
    stamp = path.stat().st_mtime_ns
    (again,) = run_matrix(["csq"], [8], [0], epochs=1, **kw)  # same configuration: reused
    assert path.stat().st_mtime_ns == stamp and again == r1
    with pytest.raises(ValueError, match=r"another configuration[\s\S]*epochs: 1 -> 2[\s\S]*--force"):
        run_matrix(["csq"], [8], [0], epochs=2, **kw)
    assert path.stat().st_mtime_ns == stamp
    from hashnb.methods.csq import CSQ

    with pytest.MonkeyPatch.context() as mp:  # a changed default is another configuration
        mp.setattr(CSQ, "default_lr", 5e-4)
        with pytest.raises(ValueError, match=r"lr: 0.001 -> 0.0005"):
            run_matrix(["csq"], [8], [0], epochs=1, **kw)
    (r2,) = run_matrix(["csq"], [8], [0], epochs=2, force=True, **kw)
    assert r2["epochs"] == 2 and json.loads(path.read_text())["epochs"] == 2
    # a result written before configurations were recorded is not trusted either
    legacy = {k: v for k, v in r2.items() if k != "request"}
    path.write_text(json.dumps(legacy))
    with pytest.raises(ValueError, match="no configuration recorded"):
        run_matrix(["csq"], [8], [0], epochs=2, **kw)


def test_bench_run_with_changed_data_is_not_reused(digits, tmp_path):
    from hashnb.matrix import run_matrix

    ds, _ = digits
    run_matrix(["lsh"], [8], [0], dataset=ds, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="data"):
        run_matrix(["lsh"], [8], [0], dataset=_with(ds, x=ds.x * 2), out=tmp_path, progress=False)


# --------------------------------------------------------------------------- 4. corrupt files
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_corrupt_split_file_is_recomputed(digits, damage):
    from hashnb.utils import cache_dir

    ds, _ = digits
    first = make_split(ds, seed=4)
    (path,) = cache_dir("splits").glob("*.npz")
    raw = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2],
                      "garbage": raw[:100] + b"\x00" * (len(raw) - 100)}[damage])
    with pytest.warns(RuntimeWarning, match=path.name):
        again = make_split(ds, seed=4)
    for part in ("train", "val", "query", "database"):
        np.testing.assert_array_equal(getattr(again, part), getattr(first, part))
    assert make_split(ds, seed=4).train.shape == first.train.shape  # repaired on disk


def test_read_only_cache_does_not_stop_make_split(digits, tmp_path, monkeypatch):
    ds, _ = digits
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("HASHNB_CACHE", str(blocker / "cache"))
    with pytest.warns(RuntimeWarning, match="in memory"):
        split = make_split(ds, seed=0)
    assert len(split.train) and len(split.query)


@pytest.mark.parametrize("name", ["model.pt", "history.json", "config.json"])
def test_damaged_finished_run_is_trained_again(name, digits, tmp_path):
    ds, split = digits
    kw = dict(bits=8, epochs=2, root=tmp_path, progress=False)
    a = run_method("csq", ds, split, **kw)
    target = a.run_dir / name
    target.write_bytes(target.read_bytes()[:20])
    with pytest.warns(RuntimeWarning, match=name):
        b = run_method("csq", ds, split, **kw)
    assert torch.equal(a.codes("query"), b.codes("query"))
    c = run_method("csq", ds, split, **kw)  # repaired: loads without a warning
    assert torch.equal(a.codes("query"), c.codes("query"))


def test_damaged_checkpoint_restarts_the_run(digits, tmp_path):
    ds, split = digits
    kw = dict(bits=8, epochs=3, seed=2, root=tmp_path, progress=False, val_every=1)
    full = run_method("csq", ds, split, cache=False, **{k: v for k, v in kw.items() if k != "root"})
    with pytest.raises(_Stop):
        run_method("csq", ds, split, callbacks=[_stop_after(2)], **kw)
    (ck,) = tmp_path.glob("*/checkpoint.pt")
    ck.write_bytes(ck.read_bytes()[:1000])
    with pytest.warns(RuntimeWarning, match="checkpoint.pt"):
        again = run_method("csq", ds, split, **kw)
    assert [h["epoch"] for h in again.history] == [1, 2, 3]
    assert torch.equal(again.codes("query"), full.codes("query"))


# --------------------------------------------------------------------------- 5. NaN / Inf
def test_nan_in_training_features_is_refused(digits):
    ds, split = digits
    x = ds.x.copy()
    x[split.train[3], 5] = np.nan
    for name in ("lsh", "csq"):
        with pytest.raises(ValueError, match=r"training inputs.*row 3"):
            fit(method_from_dataset(name, ds, bits=8), _with(ds, x=x), split, epochs=1,
                progress=False)


def test_nan_at_encode_and_in_metrics_and_search_is_refused(digits):
    from hashnb.metrics import mean_average_precision
    from hashnb.search import knn_search

    ds, split = digits
    run = fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=1, progress=False)
    q = torch.as_tensor(ds.x[:4]).clone()
    q[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"encode input x.*row 2"):
        run.method.encode(q)
    lsh = fit(method_from_dataset("lsh", ds, bits=8), ds, split, progress=False)
    with pytest.raises(ValueError, match=r"row 2"):
        lsh.method.encode(q)
    codes = run.codes("query")[:10]
    labels = torch.as_tensor(ds.labels[split.query[:10]]).clone()
    labels[7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"query_labels.*row 7"):
        mean_average_precision(codes, codes, labels, torch.as_tensor(ds.labels[split.query[:10]]))
    bad = codes.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"row 1"):
        knn_search(bad, codes, 3)


def test_exploding_loss_stops_with_a_clear_message(digits):
    ds, split = digits
    with pytest.raises(FloatingPointError, match="lower lr"):
        fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=3, lr=1e6, progress=False)


# --------------------------------------------------------------------------- 6. seeds
@pytest.mark.parametrize("name", ["csq", "dpsh", "crh"])
def test_same_seed_same_codes_in_one_process(name, digits):
    ds, split = digits

    def once():
        m = create_method(name, bits=16, num_classes=10, in_dim=64)
        return fit(m, ds, split, epochs=2, seed=0, progress=False).codes("query")

    assert torch.equal(once(), once())
    a = create_method("csq", bits=16, num_classes=10, in_dim=64, seed=1)
    b = create_method("csq", bits=16, num_classes=10, in_dim=64, seed=2)
    assert not torch.equal(a.model.head.fc.weight, b.model.head.fc.weight)


def test_run_method_init_is_unchanged(digits):
    """create_method's seeded init is the init run_method always used: torch.manual_seed(seed)
    right before the constructor (so committed results keep their codes)."""
    ds, _ = digits
    torch.manual_seed(5)
    old = create_method("mlh", bits=16, num_classes=10, in_dim=64, seed=None)
    new = method_from_dataset("mlh", ds, bits=16, seed=5)
    for (k, v), (k2, v2) in zip(old.state_dict().items(), new.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


# --------------------------------------------------------------------------- 7. threads
def test_training_and_metrics_keep_the_thread_count(tmp_path):
    code = """
import torch
torch.set_num_threads(1)
from hashnb.data import load_dataset, make_split
from hashnb.train import fit, method_from_dataset
from hashnb.metrics import mean_average_precision
ds = load_dataset("digits"); split = make_split(ds, seed=0, cache=False)
run = fit(method_from_dataset("orthohash", ds, bits=16), ds, split, epochs=2, val_every=1,
          progress=False)
assert torch.get_num_threads() == 1, ("after fit", torch.get_num_threads())
run.evaluate()
assert torch.get_num_threads() == 1, ("after evaluate", torch.get_num_threads())
print("ok")
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HASHNB_CACHE": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


# --------------------------------------------------------------------------- 8. shapes
@pytest.mark.parametrize("name", ["csq", "crh", "dpsh", "adsh"])
@pytest.mark.parametrize("classes", [7, 12])
def test_wrong_num_classes_is_named_before_training(name, classes, digits):
    ds, split = digits
    m = create_method(name, bits=8, num_classes=classes, in_dim=64)
    m.loss = None  # nothing may be trained
    with pytest.raises(ValueError, match=rf"num_classes={classes} but the labels have 10 columns"):
        fit(m, ds, split, epochs=1, progress=False)


@pytest.mark.parametrize("name", ["csq", "lsh"])
def test_wrong_in_dim_is_named_before_training(name, digits):
    ds, split = digits
    m = create_method(name, bits=8, num_classes=10, in_dim=32)
    with pytest.raises(ValueError, match=r"in_dim=32 but the inputs have 64 features"):
        fit(m, ds, split, epochs=1, progress=False)


def test_bad_variant_keyword_fails_before_any_cell(tmp_path):
    from hashnb.matrix import run_matrix

    with pytest.raises(ValueError, match=r"crh:reasign=none.*reasign.*accepted"):
        run_matrix(["lsh", "crh:reasign=none"], [8], [0], dataset="digits", out=tmp_path,
                   progress=False)
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("bits", [True, False, 8.0])
def test_bits_must_be_an_integer(bits):
    with pytest.raises(ValueError, match="bits"):
        create_method("csq", bits=bits, num_classes=10, in_dim=64)


def test_a_setting_added_later_with_a_none_default_still_loads_old_runs(digits, tmp_path):
    """A run folder written before a config key existed (here: patience) is still loaded
    when the new key is None; a real difference is named."""
    ds, split = digits
    a = fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=2, run_dir=tmp_path / "r",
            progress=False)
    cfg = tmp_path / "r" / "config.json"
    old = json.loads(cfg.read_text())
    del old["patience"]
    cfg.write_text(json.dumps(old))
    m = method_from_dataset("csq", ds, bits=8)
    m.loss = None  # loading must not train
    b = fit(m, ds, split, epochs=2, run_dir=tmp_path / "r", progress=False)
    assert torch.equal(a.codes("query"), b.codes("query"))
    with pytest.raises(ValueError, match=r"differs in \['epochs'\]"):
        fit(method_from_dataset("csq", ds, bits=8), ds, split, epochs=3, run_dir=tmp_path / "r")
