"""Data Docs views with a shared template cache: GX's pages, each template compiled once."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
from jinja2 import FileSystemBytecodeCache

from mlops_pipeline.validation import docs_view


def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    names: list[str] = []
    original = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        names.append(name)
        return original(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


def test_views_of_one_process_share_compiled_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs_view, "template_cache", lambda: cache)
    cache = docs_view.SharedBytecodeCache(disk=None)
    names = _compiles(monkeypatch)
    docs_view.CachedJinjaPageView().env.get_template("page.j2")
    first = len(names)
    assert first > 0
    docs_view.CachedJinjaPageView().env.get_template("page.j2")
    docs_view.CachedJinjaIndexPageView().env.get_template("page.j2")
    assert len(names) == first


def test_the_next_process_reads_them_from_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = docs_view.SharedBytecodeCache(FileSystemBytecodeCache(str(tmp_path)))
    monkeypatch.setattr(docs_view, "template_cache", lambda: writer)
    docs_view.CachedJinjaPageView().env.get_template("page.j2")
    assert list(tmp_path.iterdir())
    reader = docs_view.SharedBytecodeCache(FileSystemBytecodeCache(str(tmp_path)))  # a fresh process
    monkeypatch.setattr(docs_view, "template_cache", lambda: reader)
    names = _compiles(monkeypatch)
    docs_view.CachedJinjaPageView().env.get_template("page.j2")
    assert names == []


def test_a_damaged_or_unwritable_disk_cache_only_costs_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = docs_view.SharedBytecodeCache(FileSystemBytecodeCache(str(tmp_path)))
    monkeypatch.setattr(docs_view, "template_cache", lambda: cache)
    docs_view.CachedJinjaPageView().env.get_template("page.j2")
    for written in tmp_path.iterdir():
        written.write_bytes(b"not bytecode")
    fresh = docs_view.SharedBytecodeCache(FileSystemBytecodeCache(str(tmp_path / "missing")))  # writes fail
    monkeypatch.setattr(docs_view, "template_cache", lambda: fresh)
    html = docs_view.CachedJinjaPageView().env.get_template("page.j2")
    assert html is not None
    damaged = docs_view.SharedBytecodeCache(FileSystemBytecodeCache(str(tmp_path)))
    monkeypatch.setattr(docs_view, "template_cache", lambda: damaged)
    assert docs_view.CachedJinjaPageView().env.get_template("page.j2") is not None


def test_the_site_config_names_these_views_for_every_page() -> None:
    config = docs_view.site_config("/docs")
    assert config["site_index_builder"]["view"]["class_name"] == "CachedJinjaIndexPageView"
    for section in ("expectations", "validations", "profiling"):
        assert config["site_section_builders"][section]["view"] == {"module_name": docs_view.__name__, "class_name": "CachedJinjaPageView"}
    assert config["store_backend"]["base_directory"] == "/docs"
