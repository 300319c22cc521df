"""Alert routing as configured: every alert has a runbook that exists, Alertmanager's config is valid.

- each rule of alerts.yml carries a ``runbook_url`` whose file is in include/observability/runbooks,
  and each runbook names the alerts that link to it;
- alertmanager.yml, rendered by render.sh with and without a webhook URL, passes
  ``amtool check-config`` (Debian's prometheus-alertmanager, installed when missing); every
  severity routes to the team's receiver; the inhibition rules name alerts that exist.

tests/production/test_alerting.py sends a real alert through all of it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.compose.test_compose import ensure_tool

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "include" / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
ALERTMANAGER = OBSERVABILITY / "alertmanager"
RUNBOOKS = OBSERVABILITY / "runbooks"
RUNBOOKS_IN_CHECKOUT = "include/observability/runbooks"

# The annotation: the external label runbook_base when set, else the folder's path in the checkout.
RUNBOOK_URL = re.compile(
    r"^\{\{ with \$externalLabels\.runbook_base \}\}\{\{ \. \}\}\{\{ else \}\}(?P<fallback>[^{}]+)\{\{ end \}\}/(?P<page>[\w-]+\.md)$"
)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def render(tmp_path: Path, webhook_url: str | None) -> tuple[Path, subprocess.CompletedProcess[str]]:
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_ALERT_WEBHOOK_URL"}
    if webhook_url is not None:
        env["MLOPS_ALERT_WEBHOOK_URL"] = webhook_url
    output = tmp_path / "alertmanager.yml"
    done = subprocess.run(
        ["sh", str(ALERTMANAGER / "render.sh"), str(ALERTMANAGER / "alertmanager.yml"), str(output)],
        capture_output=True, text=True, env=env, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return output, done


# ---------------------------------------------------------------------------------------------
# runbooks
# ---------------------------------------------------------------------------------------------
def test_every_alert_links_a_runbook_that_exists():
    pages: dict[str, list[str]] = {}
    for rule in alert_rules():
        url = rule.get("annotations", {}).get("runbook_url", "")
        match = RUNBOOK_URL.match(url)
        assert match, f"{rule['alert']}: runbook_url {url!r} is not <runbook_base or the runbooks folder>/<page>.md"
        assert match["fallback"] == RUNBOOKS_IN_CHECKOUT, rule["alert"]
        assert (REPO / match["fallback"] / match["page"]).is_file(), f"{rule['alert']}: no runbook {match['page']}"
        pages.setdefault(match["page"], []).append(rule["alert"])
    for page, alerts in pages.items():
        text = (RUNBOOKS / page).read_text()
        missing = [alert for alert in alerts if f"`{alert}`" not in text]
        assert not missing, f"{page} does not name {missing}, which link to it"
    unused = {p.name for p in RUNBOOKS.glob("*.md")} - set(pages) - {"README.md"}
    assert not unused, f"runbooks no alert links to: {sorted(unused)}"
    index = (RUNBOOKS / "README.md").read_text()
    assert all(f"({page})" in index for page in pages), "the runbooks' README lists every page"


def test_the_runbooks_say_how_to_silence():
    assert "amtool silence add" in (RUNBOOKS / "README.md").read_text()
    for page in RUNBOOKS.glob("*.md"):
        assert "amtool silence add" in page.read_text(), f"{page.name} does not say how to silence its alert"


# ---------------------------------------------------------------------------------------------
# Alertmanager
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def amtool() -> str:
    return ensure_tool("amtool", "prometheus-alertmanager")


def test_render_puts_the_webhook_url_in_literally(tmp_path):
    url = "https://hooks.example.com/services/T0/B1?token=a&b=c|d"
    output, _ = render(tmp_path, url)
    config = yaml.safe_load(output.read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    assert [hook["url"] for hook in receivers[config["route"]["receiver"]]["webhook_configs"]] == [url]
    assert "${" not in output.read_text()


def test_without_a_webhook_url_alertmanager_still_gets_a_valid_config(tmp_path, amtool):
    output, done = render(tmp_path, None)
    assert "MLOPS_ALERT_WEBHOOK_URL is not set" in done.stderr
    config = yaml.safe_load(output.read_text())
    assert all("webhook_configs" not in receiver for receiver in config["receivers"])
    checked = subprocess.run([amtool, "check-config", str(output)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_amtool_accepts_the_config_and_routes_every_severity_to_the_team(tmp_path, amtool):
    output, _ = render(tmp_path, "http://127.0.0.1:9/alerts")
    checked = subprocess.run([amtool, "check-config", str(output)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    severities = {rule["labels"]["severity"] for rule in alert_rules()}
    assert severities == {"critical", "warning", "info"}
    for severity in sorted(severities):
        routed = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={output}", f"severity={severity}", "alertname=Any"],
            capture_output=True, text=True, timeout=60,
        )
        assert routed.returncode == 0 and routed.stdout.split() == ["team"], (severity, routed.stdout, routed.stderr)


def test_inhibition_rules_name_alerts_that_exist():
    alerts = {rule["alert"]: rule for rule in alert_rules()}
    config = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
    names = re.compile(r'^alertname(=~?)"([^"]+)"$')
    by_source = {}
    for rule in config["inhibit_rules"]:
        (source,) = rule["source_matchers"]
        (target,) = rule["target_matchers"]
        source_op, source_name = names.match(source).groups()
        target_op, target_name = names.match(target).groups()
        assert source_op == "=" and source_name in alerts, source
        targets = [name for name in alerts if re.fullmatch(target_name, name)] if target_op == "=~" else [target_name]
        assert targets and set(targets) <= set(alerts), target
        by_source[source_name] = set(targets)
    # A rollback running silences the canary's own alerts, not the servers'.
    assert by_source["CanaryTrafficWithdrawn"] == {"CanaryErrorRateHigh", "CanaryLatencyHigh"}
    assert alerts["CanaryTrafficWithdrawn"]["labels"]["severity"] == "info"
