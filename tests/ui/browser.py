"""Headless Chromium for UI tests: Debian's ``chromium`` and ``chromium-driver``, driven by Selenium.

:func:`ensure_chromium` installs both with apt when they are missing (waiting for a dpkg lock another
installer holds), so the UI tests run, never skip, on a fresh CI machine. The driver is given by
path: Selenium Manager never downloads anything.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGES = ("chromium", "chromium-driver")


@dataclass(frozen=True)
class Chromium:
    browser: str
    driver: str


def _found() -> Chromium | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return Chromium(browser, driver) if browser and driver else None


def ensure_chromium() -> Chromium:
    """Chromium and its driver, installed from Debian's archive when absent (the project's apt helper
    waits for a dpkg lock another installer holds and refreshes stale package lists)."""
    found = _found()
    if found:
        return found
    script = Path(__file__).resolve().parents[2] / "serving/docker/apt-install.sh"
    done = subprocess.run(
        ["bash", str(script), *PACKAGES], capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL
    )
    found = _found()
    if found is None:
        raise RuntimeError(f"could not install {' '.join(PACKAGES)} with apt-get:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return found


def start_driver(chromium: Chromium, width: int = 1600, height: int = 2000) -> Any:
    """A headless Chrome WebDriver session (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--proxy-server=direct://",
        "--proxy-bypass-list=*",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=chromium.driver), options=options)
