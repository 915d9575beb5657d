"""hashnb.notebook.results_dir: the committed results are found whatever the working directory."""
from __future__ import annotations

from pathlib import Path

import pytest

from hashnb import matrix
from hashnb.notebook import results_dir

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "book" / "results"


def test_from_repository_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert results_dir() == RESULTS
    assert results_dir("ablations", "crh") == RESULTS / "ablations" / "crh"
    assert results_dir("ablations/crh").is_dir()


def test_from_book_folder(monkeypatch):
    monkeypatch.chdir(ROOT / "book")
    assert results_dir("cpu") == RESULTS / "cpu"
    assert results_dir("cpu").is_absolute()


def test_elsewhere_falls_back_to_the_package_repository(monkeypatch, tmp_path):
    # an editable install: the package sits in the repository, so its results are found
    monkeypatch.chdir(tmp_path)
    assert results_dir("ablations", "lowbit") == RESULTS / "ablations" / "lowbit"


def test_copy_next_to_the_notebook_wins(monkeypatch, tmp_path):
    # the JupyterLab check runs a copy of book/: its own results/ comes first
    (tmp_path / "book" / "results" / "cpu").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "book")
    assert results_dir("cpu") == tmp_path / "book" / "results" / "cpu"
    monkeypatch.chdir(tmp_path)
    assert results_dir("cpu") == tmp_path / "book" / "results" / "cpu"


def test_missing_sub_folder_names_it(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(FileNotFoundError, match=r"book/results/ablations/no-such-study") as err:
        results_dir("ablations", "no-such-study")
    assert "hashnb.bench" in str(err.value)
    # must_exist=False: the path, for results a chapter can do without
    path = results_dir("ablations", "no-such-study", must_exist=False)
    assert path == RESULTS / "ablations" / "no-such-study" and not path.exists()


def test_no_results_anywhere_says_how_to_get_them(monkeypatch, tmp_path):
    # an install from git (Colab): the package is not in a repository with book/results
    monkeypatch.setattr(matrix, "_package_repository", lambda: tmp_path / "site-packages")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"book/results/cpu was not found") as err:
        results_dir("cpu")
    assert "git clone" in str(err.value)
    assert results_dir("cpu", must_exist=False) == tmp_path / "book" / "results" / "cpu"
