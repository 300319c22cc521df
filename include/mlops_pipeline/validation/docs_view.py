"""GX's Data Docs page views, with their Jinja templates compiled once instead of once per view.

GX gives every view object its own Jinja environment, and a batch's Data Docs use six (two site
builds of three sections and an index), so one batch compiled GX's 24 templates 102 times: about a
third of the CPU a window's validation costs. These subclasses change only where compiled templates
come from: a bytecode cache shared by every view of the process and kept on disk for the next
processes (Jinja's own ``FileSystemBytecodeCache``: a private per-user folder in the temp dir, files
written to a temporary name and renamed, each checked against its template's source and the Python
version before use). The pages they render are GX's, byte for byte.

The site itself is built by :class:`LinkedAssetsSiteBuilder`: GX's ``SiteBuilder``, except that of
the 4 MB of fonts, images and styles GX copies into every site it copies only what a page (or a
stylesheet or script a page uses) names: today the favicon and GX's logo. A window of a backfill
no longer writes, and then deletes, 4 MB it never shows; about a twentieth of a window's CPU.

The site config names them (see :func:`site_config`); a GX that no longer has these classes fails
there, loudly, when the suite runs.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path
from typing import Any

import great_expectations.render.view as gx_view
from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend
from great_expectations.render.renderer.site_builder import SiteBuilder
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BytecodeCache, FileSystemBytecodeCache
from jinja2.bccache import Bucket

log = logging.getLogger(__name__)


class SharedBytecodeCache(BytecodeCache):
    """Compiled templates in memory for this process, and on disk (when it can be) for the next ones."""

    def __init__(self, disk: BytecodeCache | None) -> None:
        self._memory: dict[str, bytes] = {}
        self._disk = disk

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._memory.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)
            return
        if self._disk is None:
            return
        try:
            self._disk.load_bytecode(bucket)
        except (OSError, EOFError, ValueError):  # a damaged file: compile as if there were none
            bucket.reset()
        if bucket.code is not None:
            self._memory[bucket.key] = bucket.bytecode_to_string()

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._memory[bucket.key] = bucket.bytecode_to_string()
        if self._disk is not None:
            try:
                self._disk.dump_bytecode(bucket)
            except OSError as exc:  # a full or read-only temp dir costs compiles, not the batch
                log.debug("Data Docs templates: cannot write the bytecode cache (%s)", exc)


@functools.cache
def template_cache() -> SharedBytecodeCache:
    """The process's cache (created on first use: importing this module creates no folder)."""
    try:
        disk: BytecodeCache | None = FileSystemBytecodeCache()
    except (OSError, RuntimeError) as exc:  # no private temp folder: memory only
        log.info("Data Docs templates: no bytecode cache on disk (%s)", exc)
        disk = None
    return SharedBytecodeCache(disk)


class CachedJinjaPageView(DefaultJinjaPageView):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = template_cache()


class CachedJinjaIndexPageView(DefaultJinjaIndexPageView):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.env.bytecode_cache = template_cache()


# Where GX's HtmlSiteStore.copy_static_assets copies every site's static assets from.
GX_STATIC = Path(gx_view.__file__).parent / "static"
_LINKING_SUFFIXES = (".html", ".css", ".js")


def linked_assets(pages: list[Path], assets: list[Path]) -> list[Path]:
    """Those of ``assets`` that one of ``pages`` names, or that a stylesheet or script so chosen names
    (by file name, as a page's relative link or a stylesheet's ``url(...)`` ends), sorted."""
    chosen: list[Path] = []
    texts = [path.read_text(errors="replace") for path in pages if path.suffix in _LINKING_SUFFIXES]
    while texts:
        text = "\n".join(texts)
        found = [path for path in assets if path not in chosen and path.name in text]
        chosen += found
        texts = [path.read_text(errors="replace") for path in found if path.suffix in _LINKING_SUFFIXES]
    return sorted(chosen)


class LinkedAssetsSiteBuilder(SiteBuilder):
    """GX's ``SiteBuilder``; on a local site, of GX's static assets only those the pages name."""

    def build(self, resource_identifiers: Any = None, build_index: bool = True) -> Any:
        store = self.target_store
        backend = store.store_backends["static_assets"]
        if not isinstance(backend, TupleFilesystemStoreBackend):
            return super().build(resource_identifiers=resource_identifiers, build_index=build_index)
        store.copy_static_assets = lambda *args, **kwargs: None  # type: ignore[method-assign]  # this build only
        try:
            built = super().build(resource_identifiers=resource_identifiers, build_index=build_index)
        finally:
            del store.copy_static_assets
        site = Path(backend.full_base_directory)
        static = site / "static"
        pages = sorted(path for path in site.rglob("*") if path.is_file() and not path.is_relative_to(static))
        for asset in linked_assets(pages, sorted(path for path in GX_STATIC.rglob("*") if path.is_file())):
            target = static / asset.relative_to(GX_STATIC)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(asset, target)
        return built


def _view(class_name: str) -> dict[str, str]:
    return {"module_name": __name__, "class_name": class_name}


def site_config(base_directory: str) -> dict[str, Any]:
    """A Data Docs site in ``base_directory`` built by :class:`LinkedAssetsSiteBuilder`, whose pages use
    these views."""
    page = {"view": _view(CachedJinjaPageView.__name__)}
    return {
        **_view(LinkedAssetsSiteBuilder.__name__),
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": _view(CachedJinjaIndexPageView.__name__)},
        "site_section_builders": {"expectations": page, "validations": page, "profiling": page},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": base_directory},
    }
