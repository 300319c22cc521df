"""A batch's Data Docs in the lake: every page, and of GX's static assets only what a page uses, so
that every local link of every published page resolves and a window no longer writes 4 MB of fonts
and images it never shows; and the index of days, with every day when windows publish at once."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mlops_pipeline.data.lake import Lake
from mlops_pipeline.data.synthetic import Scenario, generate_day
from mlops_pipeline.datasets import load_dataset_spec
from mlops_pipeline.ingest import DATA_DOCS_ZONE, _docs_files, _publish_docs
from mlops_pipeline.validation import gx_runner
from mlops_pipeline.validation.parsing import normalise_for_validation
from mlops_pipeline.validation.suites import load_dataset_suites

_LINK = re.compile(r"""(?:href|src)=["']([^"'#]+)["']""")


def _site(tmp_path: Path) -> Path:
    spec = load_dataset_spec("churn")
    suites = load_dataset_suites(spec)
    frame = normalise_for_validation(generate_day(date(2026, 3, 2), seed=3, rows=500, scenarios={Scenario.BAD_BATCH}), spec.time_column)
    docs = tmp_path / "site"
    gx_runner.run_suites(frame, suites.gate, suites.watch, run_name="ds=2026-03-02", docs_dir=docs)
    return docs


def _local_links(site: Path) -> dict[str, bool]:
    """Every local link of every page of ``site``: whether it resolves there."""
    found = {}
    for page in site.rglob("*.html"):
        for link in _LINK.findall(page.read_text()):
            if not (urlsplit(link).scheme or link.startswith("//")):  # not GX's CDN stylesheets and scripts
                found[f"{page.relative_to(site).as_posix()} -> {link}"] = (page.parent / link).resolve().is_file()
    return found


def test_published_pages_have_every_file_they_link_and_no_unused_assets(tmp_path: Path) -> None:
    site = _site(tmp_path)
    built = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert sum(name.startswith("static/") for name in built) > 10  # GX copies its assets into every site
    links = _local_links(site)
    assert sum(links.values()) > 5
    lake = Lake(str(tmp_path / "lake"))
    _publish_docs(lake, "2026-03-02", site, "quarantined", None)
    day = tmp_path / "lake" / DATA_DOCS_ZONE / "ds=2026-03-02"
    published = {p.relative_to(day).as_posix() for p in day.rglob("*") if p.is_file()}
    assert {name for name in built if not name.startswith("static/")} | {"_status.json"} <= published
    assert "static/images/favicon.ico" in published
    assert not any(name.endswith((".gif", ".otf", ".ttf", ".woff", ".woff2")) for name in published), published
    # What resolved in the site as GX built it resolves in the lake. (GX's validation pages link the
    # favicon one folder too high: broken in GX's own site too.)
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
    assert [p.relative_to(site).as_posix() for p in _docs_files(site)] == [
        "index.html",
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
