"""No secret in the repository: the scanner over every file git knows, and proof that it can fail.

The planted samples are assembled at run time, so this file holds none of them itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.reliability.secret_scan import repository_files, scan_repository, scan_text

pytestmark = pytest.mark.timeout(60)

# Pieces, joined at run time: the scanner must not find them in this file.
_AWS_ID = "AKIA" + "Q3EXAMPLE7TESTK5Z"[:16]
_AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"  # secret-scan: allow (half of a planted sample)
_PEM = "-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END " + "RSA PRIVATE KEY-----"
_GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"

PLANTED = {
    "aws access key id": (f"aws_access_key_id = {_AWS_ID}\n", "AWS access key id"),
    "aws secret key": (f'AWS_SECRET_ACCESS_KEY: "{_AWS_SECRET}"\n', "AWS secret access key"),
    "private key block": (_PEM + "\n", "private key block"),
    "github token": (f"token: {_GITHUB}\n", "GitHub token"),
    "password in url": ("MLFLOW_BACKEND=postgresql://mlflow:" + "Tr0ub4dor-3x@db:5432/mlflow\n", "password in URL"),
    "secret assigned": ('client_secret = "' + "q8Zt2LmX9vRk4Wn7" + '"\n', "high-entropy string"),
    "long random string": ("blob " + "Zm9vYmFyYmF6cXV4" + "X1Y2Z3W4V5U6T7S8R9Q0P1O2N3" + "\n", "high-entropy string"),
}
CLEAN = [
    "AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD in .env}",
    "url = postgresql+psycopg2://airflow:${POSTGRES_PASSWORD}@postgres/airflow",
    "sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
    "api_key = os.environ['MLOPS_SERVING_API_KEY']",
    "password = '<your password>'",
]


@pytest.mark.parametrize("kind", list(PLANTED))
def test_the_scanner_finds_a_planted_secret(kind: str, reliability) -> None:
    text, rule = PLANTED[kind]
    findings = scan_text("planted.txt", text)
    reliability.record("security", f"secret scanner catches a planted {kind}", f"finding '{rule}'", findings=len(findings))
    assert [f.rule for f in findings] == [rule], findings
    assert text.strip()[:30] not in str(findings[0]) or len(text) < 14  # excerpts are redacted


def test_the_scanner_passes_placeholders_and_digests(reliability) -> None:
    findings = [f for line in CLEAN for f in scan_text("clean.txt", line)]
    reliability.record("security", "secret scanner ignores placeholders and digests", "no finding", samples=len(CLEAN))
    assert findings == []


def test_the_scanner_fails_on_a_planted_file_in_a_repository(tmp_path: Path, reliability) -> None:
    """The command-line scan of a git repository exits non-zero when a planted file is committed."""
    def git(*argv: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *argv], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "settings.env").write_text(PLANTED["aws secret key"][0])
    (tmp_path / "README.md").write_text("nothing to see\n")
    git("add", ".")
    done = subprocess.run([sys.executable, "-m", "tests.reliability.secret_scan", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    reliability.record("security", "secret scan of a repository with a planted key", "exit 1 naming the file", exit_code=done.returncode)
    assert done.returncode == 1 and "settings.env:1: AWS secret access key" in done.stdout, done.stdout + done.stderr


def test_no_secret_in_the_repository(reliability) -> None:
    files = repository_files(REPO)
    findings = scan_repository(REPO)
    reliability.record("security", "no secret in the repository (git ls-files)", "no finding", files=len(files), findings=len(findings))
    assert len(files) > 50
    assert findings == [], "possible secrets (remove them, or mark a test fixture with 'secret-scan: allow'):\n" + "\n".join(map(str, findings))
