"""A small secret scanner for the repository: ``python -m tests.reliability.secret_scan``.

It reads every file git knows (tracked, plus untracked files that are not ignored) and reports:

- AWS access key ids, and AWS secret keys assigned to an ``aws_secret_access_key``-like name;
- private key blocks (``-----BEGIN ... PRIVATE KEY-----``);
- GitHub, GitLab, Slack and OpenAI-style tokens;
- passwords in URLs (``scheme://user:password@host``), unless the password is a placeholder
  (``${VAR}``, ``{var}``, ``<var>``, ``***``...);
- high-entropy strings assigned to a secret-looking name (``password``, ``token``, ``secret``,
  ``api_key``...), and long high-entropy base64-like strings anywhere.

A finding is allowed by ``secret-scan: allow`` on its line (say why next to it), or by an entry of
``ALLOWLIST`` (path glob, rule). Binary files and files over 2 MB are skipped.
"""

from __future__ import annotations

import fnmatch
import math
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 2 * 1024 * 1024
ALLOW_MARKER = "secret-scan: allow"

# (path glob, rule): findings of ``rule`` in matching files are expected, never secrets.
ALLOWLIST: tuple[tuple[str, str], ...] = (
    ("uv.lock", "high-entropy string"),  # package hashes and URLs
    ("tests/compose/test_compose.py", "password in URL"),  # the throwaway .env the compose test renders with
)

_PLACEHOLDER = re.compile(r"^(\$\{?[A-Za-z_][A-Za-z0-9_:?!-]*\}?.*|\{[^}]*\}|<[^>]*>|\*+|x+|\.\.\.|password|pass|secret|changeme|user)$", re.I)
_SECRET_NAME = r"(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|client[_-]?secret|auth)"

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}(?![A-Z0-9])")),
    ("AWS secret access key", re.compile(r"aws_?secret_?access_?key\W{0,4}[:=]\s*['\"]?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])", re.I)),
    ("private key block", re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b")),
    ("GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b")),
    ("Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b")),
    ("API token (sk-)", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b")),
    ("password in URL", re.compile(r"\b[a-z][a-z0-9+.-]{1,20}://[^\s/:@'\"]{1,64}:([^\s@/'\"]{1,128})@[A-Za-z0-9.\[-]")),
    (
        "high-entropy string",
        re.compile(_SECRET_NAME + r"[A-Za-z0-9_]*['\"]?\s*[:=]\s*[rbf]?['\"]([^'\"\s]{12,})['\"]", re.I),
    ),
    ("high-entropy string", re.compile(r"(?<![A-Za-z0-9/+_=-])([A-Za-z0-9+/_-]{40,}={0,2})(?![A-Za-z0-9/+_=-])")),
)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.excerpt}"


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_secret(rule: str, pattern: re.Pattern[str], value: str) -> bool:
    if rule == "password in URL":
        return not _PLACEHOLDER.match(value)
    if rule != "high-entropy string":
        return True
    if _PLACEHOLDER.match(value) or value.startswith(("http", "/", ".", "$")):
        return False
    if pattern.pattern.startswith(_SECRET_NAME):
        # a value assigned to a secret-looking name: random-looking, with letters and digits
        return entropy(value) >= 3.5 and bool(re.search(r"\d", value)) and bool(re.search(r"[A-Za-z]", value))
    # anywhere: base64-like (mixed case and digits), beyond what hex digests and words reach
    has_classes = all(re.search(cls, value) for cls in (r"[a-z]", r"[A-Z]", r"\d"))
    return has_classes and entropy(value) >= 4.5 and not re.fullmatch(r"[A-Za-z_]+", value)


def _redact(text: str) -> str:
    return text if len(text) <= 12 else f"{text[:4]}...{text[-2:]} ({len(text)} chars)"


def scan_text(path: str, text: str) -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        if ALLOW_MARKER in line:
            continue
        reported: list[str] = []  # one finding per value: the first (most specific) rule's
        for rule, pattern in RULES:
            for match in pattern.finditer(line):
                value = match.group(1) if match.groups() else match.group(0)
                if any(value in seen or seen in value for seen in reported):
                    continue
                if _looks_secret(rule, pattern, value) and not _allowed(path, rule):
                    reported.append(value)
                    findings.append(Finding(path, number, rule, _redact(value)))
    return findings


def _allowed(path: str, rule: str) -> bool:
    return any(fnmatch.fnmatch(path, glob) and rule == allowed for glob, allowed in ALLOWLIST)


def repository_files(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    return sorted({name for name in listed.decode().split("\0") if name})


def scan_files(root: Path, paths: Iterable[str]) -> list[Finding]:
    findings = []
    for relative in paths:
        path = root / relative
        try:
            if not path.is_file() or path.stat().st_size > MAX_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        if b"\0" in data[:8192]:
            continue  # binary
        findings.extend(scan_text(relative, data.decode("utf-8", errors="replace")))
    return findings


def scan_repository(root: Path) -> list[Finding]:
    return scan_files(root, repository_files(root))


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path.cwd()
    findings = scan_repository(root)
    for finding in findings:
        print(finding)
    print(f"{len(findings)} possible secret(s) in {root}", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
