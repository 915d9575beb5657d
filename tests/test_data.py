"""Tests for hashnb.data datasets and protocols (no network, no /work/shared needed)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hashnb.data import (
    DatasetNotFoundError, HashingDataset, TorchImageDataset, load_dataset, load_image_list,
    make_split,
)
from hashnb.data import datasets as dsmod
from hashnb.data import protocols as prmod


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Own cache dir, no HASHNB_DATA from the environment, never the network."""
    monkeypatch.setenv("HASHNB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HASHNB_DATA", raising=False)
    monkeypatch.setenv("HASHNB_DOWNLOAD", "0")


# ----------------------------------------------------------------------------- fake CIFAR-10
def _fake_cifar(n_per_class_train=2, n_per_class_test=2, seed=0):
    rng = np.random.default_rng(seed)
    ytr = np.tile(np.arange(10), n_per_class_train).astype(np.uint8)
    yte = np.tile(np.arange(10), n_per_class_test).astype(np.uint8)
    xtr = rng.integers(0, 256, (len(ytr), 32, 32, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, (len(yte), 32, 32, 3), dtype=np.uint8)
    return xtr, ytr, xte, yte


def _write_npz(path, xtr, ytr, xte, yte, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte, **extra)
    return path


def _write_batches(folder, xtr, ytr, xte, yte):
    """torchvision's cifar-10-batches-py layout: 5 train batches + test_batch, CHW rows."""
    folder.mkdir(parents=True, exist_ok=True)

    def dump(name, x, y):
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # (n, 3072), R plane then G then B
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [int(v) for v in y],
                         "batch_label": name}, f)

    for i, part in enumerate(np.array_split(np.arange(len(xtr)), 5), start=1):
        dump(f"data_batch_{i}", xtr[part], ytr[part])
    dump("test_batch", xte, yte)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(dsmod.CIFAR10_CLASSES)}, f)
    return folder


def _check_cifar(ds, xtr, ytr, xte, yte):
    assert ds.name == "cifar10" and ds.kind == "image"
    assert ds.x.dtype == np.uint8 and ds.x.shape == (len(xtr) + len(xte), 32, 32, 3)
    np.testing.assert_array_equal(ds.x, np.concatenate([xtr, xte]))  # train first, then test
    np.testing.assert_array_equal(ds.labels.argmax(1), np.concatenate([ytr, yte]))
    assert ds.labels.dtype == np.float32 and ds.labels.shape[1] == 10
    assert np.all(ds.labels.sum(1) == 1)
    assert ds.classes == dsmod.CIFAR10_CLASSES
    assert ds.meta["n_train"] == len(xtr)


# ----------------------------------------------------------------------------- digits
def test_digits():
    ds = load_dataset("digits")
    assert len(ds) == 1797 and ds.kind == "vector"
    assert ds.x.dtype == np.float32 and ds.x.shape == (1797, 64)
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.images.shape == (1797, 8, 8)
    np.testing.assert_allclose(ds.images.reshape(1797, 64), ds.x)
    assert ds.labels.shape == (1797, 10) and ds.is_single_label
    x0, y0 = ds[0]
    assert x0.shape == (64,) and y0.shape == (10,) and y0.sum() == 1
    from sklearn.datasets import load_digits
    np.testing.assert_array_equal(ds.label_ids, load_digits().target)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist-xyz")


# ----------------------------------------------------------------------------- cifar10 loader
@pytest.mark.parametrize("layout", ["root_dir", "env_dir", "env_parent", "env_file"])
def test_cifar10_npz_layouts(tmp_path, monkeypatch, layout):
    arrays = _fake_cifar()
    if layout == "env_parent":
        npz = _write_npz(tmp_path / "data" / "cifar10" / "cifar10.npz", *arrays)
    else:
        npz = _write_npz(tmp_path / "data" / "cifar10.npz", *arrays)
    if layout == "root_dir":
        ds = load_dataset("cifar10", root=npz.parent, download=False)
    else:
        target = {"env_dir": npz.parent, "env_parent": tmp_path / "data", "env_file": npz}[layout]
        monkeypatch.setenv("HASHNB_DATA", str(target))
        ds = load_dataset("cifar10", download=False)
    _check_cifar(ds, *arrays)
    assert ds.meta["source"] == str(npz) and ds.meta["format"] == "npz"


@pytest.mark.parametrize("where", ["parent", "folder_itself"])
def test_cifar10_batches_folder(tmp_path, monkeypatch, where):
    arrays = _fake_cifar(seed=1)
    folder = _write_batches(tmp_path / "d" / "cifar-10-batches-py", *arrays)
    monkeypatch.setenv("HASHNB_DATA", str(folder.parent if where == "parent" else folder))
    ds = load_dataset("cifar10", download=False)
    _check_cifar(ds, *arrays)
    assert ds.meta["format"] == "batches"
    # the pickles store rows as 3 colour planes: pixel (r, c) of channel k is row[k*1024+r*32+c]
    with open(folder / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][0]
    assert ds.x[0, 5, 7, 2] == row[2 * 1024 + 5 * 32 + 7]


def test_cifar10_npz_and_batches_agree(tmp_path):
    arrays = _fake_cifar(seed=2)
    a = load_dataset("cifar10", root=_write_npz(tmp_path / "a" / "cifar10.npz", *arrays).parent,
                     download=False)
    b = load_dataset("cifar10", root=_write_batches(tmp_path / "b" / "cifar-10-batches-py",
                                                    *arrays).parent, download=False)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.fingerprint == b.fingerprint  # same labels -> same split cache key


def test_cifar10_missing_names_hashnb_data(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HASHNB_DATA", str(empty))
    with pytest.raises(DatasetNotFoundError) as ei:
        load_dataset("cifar10", download=False)
    msg = str(ei.value)
    assert "HASHNB_DATA" in msg and str(empty) in msg
    assert "cifar-10-batches-py" in msg and "cifar10.npz" in msg and "download=True" in msg
    assert isinstance(ei.value, FileNotFoundError)
    # download=None obeys HASHNB_DOWNLOAD=0 (set by the fixture): same error, no network
    with pytest.raises(DatasetNotFoundError, match="HASHNB_DATA"):
        load_dataset("cifar10")
    with pytest.raises(DatasetNotFoundError, match="HASHNB_DATA=<unset>"):
        monkeypatch.delenv("HASHNB_DATA")
        load_dataset("cifar10", download=False)


def test_cifar10_failed_download_is_clear(tmp_path, monkeypatch):
    """A network failure during download becomes one DatasetNotFoundError (never a hang)."""
    tvu = pytest.importorskip("torchvision.datasets.utils")
    calls = []

    def fail(url, download_root, **kw):
        import urllib.error
        calls.append((url, download_root))
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tvu, "download_and_extract_archive", fail)
    with pytest.raises(DatasetNotFoundError, match="downloading .* failed") as ei:
        load_dataset("cifar10", root=tmp_path / "dl", download=True)
    assert "HASHNB_DATA" in str(ei.value)
    assert calls and calls[0][0] == dsmod.CIFAR10_URL and calls[0][1] == str(tmp_path / "dl")


@pytest.mark.parametrize("defect,match", [
    ("float", "uint8"), ("chw", "channels last"), ("label_range", "0..9"),
    ("label_len", "labels must have shape"), ("missing_key", "lacks arrays"),
    ("not_zip", "not a readable"), ("truncated", "not a readable"),
    ("byte_corrupt", "not a readable"),
])
def test_cifar10_bad_npz(tmp_path, defect, match):
    xtr, ytr, xte, yte = _fake_cifar()
    path = tmp_path / "bad" / "cifar10.npz"
    path.parent.mkdir()
    if defect == "float":
        _write_npz(path, xtr.astype(np.float32) / 255, ytr, xte, yte)
    elif defect == "chw":
        _write_npz(path, xtr.transpose(0, 3, 1, 2), ytr, xte, yte)
    elif defect == "label_range":
        _write_npz(path, xtr, ytr + 1, xte, yte)
    elif defect == "label_len":
        _write_npz(path, xtr, ytr[:-1], xte, yte)
    elif defect == "missing_key":
        np.savez(path, x_train=xtr, y_train=ytr, x_test=xte)
    elif defect in ("truncated", "byte_corrupt"):  # compressed, like the shared copy
        np.savez_compressed(path, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
        raw = bytearray(path.read_bytes())
        if defect == "truncated":
            raw = raw[: len(raw) // 2]
        else:  # the zip directory is intact; x_train's compressed bytes are not
            raw[200:1200] = bytes(1000)
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=match):
        load_dataset("cifar10", root=path.parent, download=False)


# ----------------------------------------------------------------------------- image lists
def _write_list(tmp_path, entries, header=""):
    from PIL import Image

    rng = np.random.default_rng(0)
    pix = {}
    for rel, _labels, size in entries:
        if size is None:
            continue
        p = tmp_path / "imgs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        Image.fromarray(arr).save(p)
        pix[rel] = arr
    lines = [header] + [f"{rel} {' '.join(str(v) for v in lab)}" for rel, lab, _ in entries]
    lf = tmp_path / "imgs" / "db.txt"
    lf.write_text("\n".join(lines) + "\n")
    return lf, pix


def test_image_list_roundtrip(tmp_path):
    entries = [("a/0.png", [1, 0, 1], (9, 7)), ("a/1.png", [0, 1, 0], (5, 5)),
               ("b/2.png", [0, 0, 0], (6, 11))]
    lf, pix = _write_list(tmp_path, entries, header="# comment line\n")
    ds = load_image_list(lf, classes=["x", "y", "z"])
    assert ds.name == "db" and ds.kind == "image" and ds.is_lazy and len(ds) == 3
    assert ds.labels.dtype == np.float32
    np.testing.assert_array_equal(ds.labels, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert not ds.is_single_label
    for i, (rel, _, _) in enumerate(entries):
        x, y = ds[i]
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, pix[rel])  # PNG is lossless
    assert ds.meta["line_numbers"] == [3, 4, 5]  # header "# comment" + blank line skipped


@pytest.mark.parametrize("bad_line,match", [
    ("c/3.png 1 0", "line 4: 2 labels, expected 3"),
    ("c/3.png 1 2 0", "line 4: labels must be 0 or 1"),
    ("c/3.png", "line 4: expected 'path 0 1 0"),
])
def test_image_list_malformed_line(tmp_path, bad_line, match):
    lf, _ = _write_list(tmp_path, [("a/0.png", [1, 0, 1], (4, 4)), ("a/1.png", [0, 1, 0], (4, 4))])
    lf.write_text(lf.read_text() + bad_line + "\n")
    with pytest.raises(ValueError, match=match):
        load_image_list(lf)


def test_image_list_missing_file(tmp_path):
    lf, _ = _write_list(tmp_path, [("a/0.png", [1, 0], (4, 4)), ("gone.png", [0, 1], None)])
    with pytest.raises(FileNotFoundError, match="line 3"):
        load_image_list(lf, check_files=True)
    ds = load_image_list(lf)  # lazy: loads fine, fails when the image is indexed
    ds[0]
    with pytest.raises(FileNotFoundError, match=r"gone\.png.*line 3"):
        ds[1]


def test_image_list_random_protocol(tmp_path):
    rng = np.random.default_rng(0)
    entries = [(f"{i}.png", list(rng.integers(0, 2, 4)), (3, 3)) for i in range(40)]
    lf, _ = _write_list(tmp_path, entries)
    ds = load_image_list(lf)
    s = make_split(ds, "random", n_query=8, n_train=20, seed=1)
    assert len(s.query) == 8 and len(s.train_full) == 20 and len(s.val) == 2
    assert len(s.database) == 32 and np.intersect1d(s.query, s.database).size == 0
    assert np.isin(s.train_full, s.database).all()
    with pytest.raises(ValueError, match="no default protocol"):
        make_split(ds)
    with pytest.raises(ValueError, match="single-label"):
        make_split(ds, "cifar10")


# ----------------------------------------------------------------------------- torch adapter
def test_torch_image_dataset(tmp_path):
    arrays = _fake_cifar()
    ds = load_dataset("cifar10", root=_write_npz(tmp_path / "c" / "cifar10.npz", *arrays).parent,
                      download=False)
    idx = np.array([3, 25, 7])
    tds = TorchImageDataset(ds, idx, transform=lambda t: t * 2)
    assert len(tds) == 3
    x, y, j = tds[1]
    assert j == 25 and x.dtype == torch.float32 and x.shape == (3, 32, 32)
    np.testing.assert_allclose(x.numpy(), ds.x[25].transpose(2, 0, 1) / 255.0 * 2, rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), ds.labels[25])
    xb, yb, jb = next(iter(torch.utils.data.DataLoader(tds, batch_size=3)))
    assert xb.shape == (3, 3, 32, 32) and yb.shape == (3, 10) and jb.tolist() == idx.tolist()
    v = TorchImageDataset(load_dataset("digits"))
    assert v[5][0].shape == (64,) and len(v) == 1797
    with pytest.raises(IndexError):
        TorchImageDataset(ds, [len(ds)])


def test_torch_image_dataset_lazy_list(tmp_path):
    lf, pix = _write_list(tmp_path, [("a.png", [1, 0], (6, 4)), ("b.png", [0, 1], (6, 4))])
    x, y, j = TorchImageDataset(load_image_list(lf))[1]
    assert x.shape == (3, 6, 4) and j == 1
    np.testing.assert_allclose(x.numpy(), pix["b.png"].transpose(2, 0, 1) / 255.0, rtol=1e-6)


# ----------------------------------------------------------------------------- protocols
CIFAR_LABELS = np.concatenate([np.repeat(np.arange(10), 5000), np.repeat(np.arange(10), 1000)])

EXPECTED = {  # protocol: (train, val, query, database)
    "cifar10": (4500, 500, 1000, 54000),
    "cifar10-1": (4500, 500, 1000, 59000),
    "cifar10-2": (45000, 5000, 10000, 50000),
}


def _per_class(idx, labels=CIFAR_LABELS):
    return np.bincount(labels[idx], minlength=10)


@pytest.mark.parametrize("protocol", list(EXPECTED))
def test_cifar10_protocols(protocol):
    s = make_split(CIFAR_LABELS, protocol, seed=0, cache=False)
    assert (len(s.train), len(s.val), len(s.query), len(s.database)) == EXPECTED[protocol]
    for a in (s.train, s.val, s.query, s.database):
        assert a.dtype == np.int64 and np.all(np.diff(a) > 0)  # sorted, no repeats
    everything = np.arange(60000)
    # always: val cut from train, queries never in the database nor in train
    assert np.intersect1d(s.train, s.val).size == 0
    np.testing.assert_array_equal(s.train_full, np.union1d(s.train, s.val))
    assert np.intersect1d(s.query, s.database).size == 0
    assert np.intersect1d(s.query, s.train_full).size == 0
    if protocol == "cifar10":
        assert np.intersect1d(s.train_full, s.database).size == 0
        np.testing.assert_array_equal(np.concatenate([s.query, s.train_full, s.database]).size,
                                      60000)
        np.testing.assert_array_equal(np.union1d(np.union1d(s.query, s.train_full), s.database),
                                      everything)
    elif protocol == "cifar10-1":
        assert np.isin(s.train_full, s.database).all()  # train drawn FROM the database
        np.testing.assert_array_equal(np.union1d(s.query, s.database), everything)
    else:
        np.testing.assert_array_equal(s.query, np.arange(50000, 60000))  # the test images
        np.testing.assert_array_equal(s.database, np.arange(50000))
        np.testing.assert_array_equal(s.train_full, s.database)
    # class balance
    if protocol != "cifar10-2":
        assert (_per_class(s.query) == 100).all()
        assert (_per_class(s.train_full) == 500).all()
    assert (_per_class(s.val) == len(s.val) // 10).all()  # stratified validation cut


def test_digits_protocol_default():
    ds = load_dataset("digits")
    s = make_split(ds)
    assert s.protocol == "digits"
    assert (len(s.train), len(s.val), len(s.query), len(s.database)) == (450, 50, 300, 997)
    ids = ds.label_ids
    assert (np.bincount(ids[s.query]) == 30).all() and (np.bincount(ids[s.train_full]) == 50).all()
    assert (np.bincount(ids[s.val]) == 5).all()
    np.testing.assert_array_equal(
        np.sort(np.concatenate([s.query, s.train_full, s.database])), np.arange(1797))


def test_split_seeds():
    a = make_split(CIFAR_LABELS, "cifar10", seed=3, cache=False)
    b = make_split(CIFAR_LABELS, "cifar10", seed=3, cache=False)
    c = make_split(CIFAR_LABELS, "cifar10", seed=4, cache=False)
    for k in ("train", "val", "query", "database"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.query, c.query) and not np.array_equal(a.train, c.train)
    # the validation fraction changes only the train/val cut, never query or database
    d = make_split(CIFAR_LABELS, "cifar10", seed=3, val_fraction=0.2, cache=False)
    np.testing.assert_array_equal(a.query, d.query)
    np.testing.assert_array_equal(a.train_full, d.train_full)
    assert len(d.val) == 1000
    e = make_split(CIFAR_LABELS, "cifar10", seed=3, val_fraction=0.0, cache=False)
    assert len(e.val) == 0 and len(e.train) == 5000


def test_split_cache_roundtrip(monkeypatch):
    from hashnb.utils import cache_dir

    assert not list(cache_dir("splits").glob("*.npz"))
    a = make_split(CIFAR_LABELS, "cifar10-1", seed=7)
    files = list(cache_dir("splits").glob("*.npz"))
    assert len(files) == 1 and "cifar10-1" in files[0].name and "seed7" in files[0].name

    def boom(*a, **k):
        raise AssertionError("recomputed instead of loading the cache")

    monkeypatch.setattr(prmod, "_per_class", boom)
    b = make_split(CIFAR_LABELS, "cifar10-1", seed=7)
    for k in ("train", "val", "query", "database"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
        assert getattr(b, k).dtype == np.int64
    with pytest.raises(AssertionError, match="recomputed"):  # other seed: not cached yet
        make_split(CIFAR_LABELS, "cifar10-1", seed=8)
    with pytest.raises(AssertionError, match="recomputed"):  # other labels: other fingerprint
        make_split(CIFAR_LABELS[::-1].copy(), "cifar10-1", seed=7)
    with pytest.raises(AssertionError, match="recomputed"):  # other val_fraction
        make_split(CIFAR_LABELS, "cifar10-1", seed=7, val_fraction=0.2)
    # a corrupt cache file is recomputed, not trusted
    monkeypatch.undo()
    files[0].write_bytes(b"garbage")
    c = make_split(CIFAR_LABELS, "cifar10-1", seed=7)
    np.testing.assert_array_equal(a.query, c.query)


def test_split_same_for_dataset_and_labels(tmp_path):
    ds = HashingDataset(name="cifar10", x=np.zeros((60000, 1), np.float32),
                        labels=CIFAR_LABELS, classes=list(dsmod.CIFAR10_CLASSES), kind="vector")
    a = make_split(ds, seed=5)
    b = make_split(CIFAR_LABELS, "cifar10", seed=5, cache=False)
    np.testing.assert_array_equal(a.query, b.query)
    np.testing.assert_array_equal(a.val, b.val)


@pytest.mark.parametrize("protocol,match", [
    ("cifar10", "600 items per class"), ("cifar10-1", "600 items per class"),
    ("cifar10-2", "60,000"), ("nope", "unknown protocol"),
])
def test_protocol_does_not_fit(protocol, match):
    with pytest.raises(ValueError, match=match):
        make_split(load_dataset("digits"), protocol, cache=False)


def test_split_argument_errors():
    with pytest.raises(ValueError, match="n_query"):
        make_split(CIFAR_LABELS, "random", n_query=10)
    with pytest.raises(ValueError, match="random' only"):
        make_split(CIFAR_LABELS, "cifar10", n_query=10, n_train=10)
    with pytest.raises(ValueError, match="val_fraction"):
        make_split(CIFAR_LABELS, "cifar10", val_fraction=1.0)
    with pytest.raises(ValueError, match="does not fit"):
        make_split(np.arange(10) % 2, "random", n_query=6, n_train=6)
    with pytest.raises(ValueError, match="no default protocol"):
        make_split(CIFAR_LABELS)


def test_random_protocol_train_out_of_database():
    y = (np.random.default_rng(0).random((500, 5)) < 0.3).astype(np.float32)
    s = make_split(y, "random", n_query=50, n_train=100, train_in_database=False, seed=2,
                   cache=False)
    assert len(s.database) == 350 and np.intersect1d(s.train_full, s.database).size == 0
    assert len(s.val) == 10 and len(s.train) == 90


def test_hashing_dataset_checks():
    ds = HashingDataset(name="t", x=np.zeros((3, 2), np.float32), labels=[0, 1, 1],
                        classes=["a", "b", "c"], kind="vector")  # class "c" unused: still 3 columns
    assert ds.labels.shape == (3, 3) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.label_ids, [0, 1, 1])
    with pytest.raises(ValueError, match="rows"):
        HashingDataset(name="t", x=np.zeros((2, 2)), labels=[0, 1, 1], classes=["a", "b"])
    with pytest.raises(ValueError, match="class names"):
        HashingDataset(name="t", x=np.zeros((2, 2)), labels=np.eye(2), classes=["a"])
    with pytest.raises(ValueError, match="kind"):
        HashingDataset(name="t", x=np.zeros((2, 2)), labels=[0, 1], classes=["a", "b"], kind="x")
    multi = HashingDataset(name="m", x=np.zeros((2, 2)), labels=[[1, 1], [0, 1]],
                           classes=["a", "b"], kind="vector")
    with pytest.raises(ValueError, match="multi-label"):
        multi.label_ids
    sub = ds.subset([2, 0])
    np.testing.assert_array_equal(sub.label_ids, [1, 0])
    assert ds.fingerprint != sub.fingerprint
