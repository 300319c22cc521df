"""``python -m mlops_serving``: run the server with uvicorn (uvloop + httptools, one write per response).

Host/port/workers come from ``MLOPS_SERVING_HOST`` (0.0.0.0), ``MLOPS_SERVING_PORT``
(8080) and ``MLOPS_SERVING_WORKERS`` (1). SIGTERM/SIGINT stop accepting
connections, finish in-flight requests, then flush the prediction log.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from pathlib import Path
from typing import Any

sys.dont_write_bytecode = True  # read-only root filesystem: never write __pycache__


def _prepare_metrics_dir(directory: Path) -> bool:
    """Create/clean the Prometheus multiprocess directory; False if unusable."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        probe = directory / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        logging.getLogger("mlops_serving").warning(
            "metrics directory %s is not writable (%s); each worker will report its own metrics",
            directory,
            exc,
        )
        return False
    return True


def _log_config(level: str) -> dict:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["mlops_serving"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def main() -> int:
    from .settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mlops_serving: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")

    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = settings.metrics_dir
        if metrics_dir is None and settings.prediction_log_enabled:
            # Inside the (writable) log dir, in a folder readers of ds=* partitions ignore.
            metrics_dir = settings.prediction_log_dir / "_prometheus"
        if metrics_dir is not None and _prepare_metrics_dir(metrics_dir):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover
        loop = "auto"
    http: Any
    try:
        from .protocol import OneWriteHttpToolsProtocol

        http = OneWriteHttpToolsProtocol  # a response's headers and body in one write: see there
    except ImportError:  # pragma: no cover - without httptools
        http = "auto"

    uvicorn.run(
        "mlops_serving.app:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=settings.access_log,
        log_config=_log_config(settings.log_level),
        log_level=settings.log_level,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
