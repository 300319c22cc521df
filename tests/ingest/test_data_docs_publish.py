"""A batch's Data Docs: every page, and of GX's static assets only what a page uses, so that every
local link that resolves in GX's own site resolves in ours and in the lake, while a window no longer
writes 4 MB of fonts and images it never shows; and the index of days, with every day when windows
publish at once."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.ingest import DATA_DOCS_ZONE, _publish_docs
from mlops_pipeline.validation import docs_view, gx_runner
from mlops_pipeline.validation.parsing import normalise_for_validation
from mlops_pipeline.validation.suites import load_dataset_suites

_LINK = re.compile(r"""(?:href|src)=["']([^"'#]+)["']""")
_RUN_TIME = re.compile(r"\d{8}T\d{6}\.\d+Z")  # a run's folder: differs between two runs


def _files(site: Path) -> set[str]:
    return {_RUN_TIME.sub("*", p.relative_to(site).as_posix()) for p in site.rglob("*") if p.is_file()}


def _site(tmp_path: Path, name: str = "site") -> Path:
    spec = load_dataset_spec("churn")
    suites = load_dataset_suites(spec)
    frame = normalise_for_validation(generate_day(date(2026, 3, 2), seed=3, rows=500, scenarios={Scenario.BAD_BATCH}), spec.time_column)
    docs = tmp_path / name
    gx_runner.run_suites(frame, suites.gate, suites.watch, run_name="ds=2026-03-02", docs_dir=docs)
    return docs


def _gx_own_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same site built by GX's own SiteBuilder, which copies all of its static assets."""
    ours = docs_view.site_config

    def stock(base_directory: str) -> dict:
        config = ours(base_directory)
        del config["module_name"]
        return {**config, "class_name": "SiteBuilder"}

    with monkeypatch.context() as patched:
        patched.setattr(docs_view, "site_config", stock)
        return _site(tmp_path, "gx-site")


def _local_links(site: Path) -> dict[str, bool]:
    """Every local link of every page of ``site``: whether it resolves there."""
    found = {}
    for page in site.rglob("*.html"):
        for link in _LINK.findall(page.read_text()):
            if not (urlsplit(link).scheme or link.startswith("//")):  # not GX's CDN stylesheets and scripts
                found[_RUN_TIME.sub("*", f"{page.relative_to(site).as_posix()} -> {link}")] = (page.parent / link).resolve().is_file()
    return found


def test_published_pages_have_every_file_they_link_and_no_unused_assets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gx_site = _gx_own_site(tmp_path, monkeypatch)
    gx_built = _files(gx_site)
    assert sum(name.startswith("static/") for name in gx_built) > 10  # GX copies its assets into every site
    gx_links = _local_links(gx_site)
    assert sum(gx_links.values()) > 5
    site = _site(tmp_path)
    built = _files(site)
    assert {name for name in built if not name.startswith("static/")} == {name for name in gx_built if not name.startswith("static/")}
    assert "static/images/favicon.ico" in built
    assert not any(name.endswith((".gif", ".otf", ".ttf", ".woff", ".woff2")) for name in built), built
    # What resolves in GX's own site resolves in ours, with the same pages and links. (GX's validation
    # pages link the favicon one folder too high: broken in GX's own site too.)
    links = _local_links(site)
    assert links == gx_links
    lake = Lake(str(tmp_path / "lake"))
    _publish_docs(lake, "2026-03-02", site, "quarantined", None)
    day = tmp_path / "lake" / DATA_DOCS_ZONE / "ds=2026-03-02"
    assert _files(day) == built | {"_status.json"}
    assert _local_links(day) == links
    assert not site.exists()  # the local copy is gone once published


def test_an_asset_named_only_by_a_stylesheet_a_page_uses_is_kept(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "static" / "styles").mkdir(parents=True)
    (site / "static" / "fonts").mkdir()
    (site / "index.html").write_text('<link href="static/styles/site.css">')
    (site / "static" / "styles" / "site.css").write_text('@font-face { src: url("../fonts/used.woff2") }')
    (site / "static" / "fonts" / "used.woff2").write_bytes(b"font")
    (site / "static" / "fonts" / "unused.woff2").write_bytes(b"font")
    assets = sorted((site / "static").rglob("*.*"))
    assert [p.relative_to(site).as_posix() for p in docs_view.linked_assets([site / "index.html"], assets)] == [
        "static/fonts/used.woff2",
        "static/styles/site.css",
    ]


def _tiny_site(root: Path) -> Path:
    root.mkdir()
    (root / "index.html").write_text("<p>a day</p>")
    return root


def test_a_day_published_between_another_windows_read_and_write_of_the_index_stays_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    index = lake.path(DATA_DOCS_ZONE, "index.html")
    real_write = Lake.write_bytes_atomic
    interleaved: list[str] = []

    def write(self: Lake, path: str, data: bytes) -> None:
        if path == index and not interleaved:
            # Window A has read the days and is about to write its index: window B publishes first.
            interleaved.append("2026-03-03")
            _publish_docs(lake, "2026-03-03", _tiny_site(tmp_path / "b"), "validated", None)
        real_write(self, path, data)

    monkeypatch.setattr(Lake, "write_bytes_atomic", write)
    _publish_docs(lake, "2026-03-02", _tiny_site(tmp_path / "a"), "quarantined", None)
    assert interleaved == ["2026-03-03"]
    html = (tmp_path / "lake" / DATA_DOCS_ZONE / "index.html").read_text()
    assert '<a href="ds=2026-03-02/index.html">2026-03-02</a></td><td class="quarantined">' in html
    assert '<a href="ds=2026-03-03/index.html">2026-03-03</a></td><td class="validated">' in html
