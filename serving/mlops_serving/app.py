"""The HTTP app: ``mlops_serving.app:app``.

The hot endpoints (``POST /predict``, ``POST /invocations``, ``GET /health``,
``/ready``, ``/version``, ``/metrics``) are served by a small raw-ASGI
dispatcher in front of FastAPI: raw body bytes, orjson, no pydantic on the
request path. FastAPI still owns everything else (``/docs``, ``/openapi.json``,
404/405) and declares the same routes so the OpenAPI schema documents them.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__, metrics
from .batching import MicroBatcher
from .model import ServingModel, load_model
from .predlog import PredictionLogger
from .settings import Settings
from .validation import RequestError, json_type

log = logging.getLogger("mlops_serving")

from starlette.types import Receive, Scope, Send  # noqa: E402  (ASGI types shared with Starlette)

PREDICT = "predict"
INVOCATIONS = "invocations"
MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
# Scoring calls larger than this run in a worker thread instead of the event loop.
OFFLOAD_ROWS = 2048
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,128}$")
_SOURCE_RE = re.compile(rb"^[A-Za-z0-9._:-]{1,64}$")
_JSON_HEADERS = [(b"content-type", b"application/json")]


def _is_json_content_type(value: bytes | None) -> bool:
    if value is None:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def _parse_json(body: bytes) -> tuple[Any, bool]:
    """The parsed body, and whether it is strict JSON (then the prediction log keeps it as is)."""
    try:
        return orjson.loads(body), True
    except orjson.JSONDecodeError as exc:
        error = str(exc)
    # orjson is strict JSON. MLflow clients sometimes send NaN/Infinity tokens:
    # parse those leniently so validation can say where they are not allowed.
    if b"NaN" in body or b"Infinity" in body:
        try:
            return json.loads(body), False
        except RecursionError:
            raise RequestError(400, "malformed JSON: nesting too deep", "bad_request") from None
        except (ValueError, UnicodeDecodeError) as exc2:
            error = str(exc2)
    if "recursion" in error.lower() or "depth" in error.lower():
        raise RequestError(400, "malformed JSON: nesting too deep", "bad_request")
    raise RequestError(400, f"malformed JSON: {error}", "bad_request")


def _json_floats(probs: np.ndarray) -> Any:
    """Values orjson writes fastest, each in its own precision: a float32 score as its shortest
    float32 text (numpy scalars), a float64 probability as a Python float."""
    return probs.tolist() if probs.dtype == np.float64 else probs


def _type_name(value: Any) -> str:
    return json_type(value)


def _records_from_predict(obj: Any) -> list[Any]:
    if type(obj) is not dict:
        raise RequestError(
            422, f"request body must be a JSON object with a 'records' list, got {_type_name(obj)}"
        )
    if len(obj) != 1 or "records" not in obj:
        extra = [k for k in obj if k != "records"]
        if extra:
            raise RequestError(422, f"unexpected top-level field {extra[0]!r} (only 'records' is accepted)")
        raise RequestError(422, "missing field 'records'")
    records = obj["records"]
    if type(records) is not list:
        raise RequestError(422, f"'records' must be a list of objects, got {_type_name(records)}")
    return records


def _records_from_mlflow(obj: Any, feature_names: tuple[str, ...]) -> list[Any]:
    """MLflow scoring payloads -> list of record dicts."""
    if type(obj) is not dict:
        raise RequestError(
            422,
            f"request body must be a JSON object with one of {', '.join(MLFLOW_FORMATS)}; got {_type_name(obj)}",
        )
    keys = [k for k in obj if k != "params"]
    fmts = [k for k in keys if k in MLFLOW_FORMATS]
    if len(fmts) != 1:
        if not fmts:
            raise RequestError(422, f"request body must contain exactly one of {', '.join(MLFLOW_FORMATS)}")
        raise RequestError(
            422, f"request body must contain only one of {', '.join(MLFLOW_FORMATS)}, got {fmts}"
        )
    unknown = [k for k in keys if k not in MLFLOW_FORMATS]
    if unknown:
        raise RequestError(422, f"unexpected top-level field {unknown[0]!r}")
    fmt = fmts[0]
    data = obj[fmt]
    if fmt == "dataframe_records":
        if type(data) is not list:
            raise RequestError(422, f"'dataframe_records' must be a list of objects, got {_type_name(data)}")
        return data
    if fmt == "dataframe_split":
        if type(data) is not dict:
            raise RequestError(422, f"'dataframe_split' must be an object, got {_type_name(data)}")
        columns = data.get("columns")
        rows = data.get("data")
        if type(columns) is not list or not all(type(c) is str for c in columns):
            raise RequestError(422, "'dataframe_split.columns' must be a list of column names")
        if len(set(columns)) != len(columns):
            raise RequestError(422, "'dataframe_split.columns' has duplicate names")
        if type(rows) is not list:
            raise RequestError(422, f"'dataframe_split.data' must be a list of rows, got {_type_name(rows)}")
        width = len(columns)
        out = []
        for i, row in enumerate(rows):
            if type(row) is not list:
                raise RequestError(422, f"record {i}: row must be a list, got {_type_name(row)}")
            if len(row) != width:
                raise RequestError(
                    422, f"record {i}: row has {len(row)} values, expected {width} (one per column)"
                )
            out.append(dict(zip(columns, row, strict=True)))
        return out
    # "inputs" / "instances"
    if type(data) is list:
        if data and all(type(r) is list for r in data):
            width = len(feature_names)
            out = []
            for i, row in enumerate(data):
                if len(row) != width:
                    raise RequestError(
                        422,
                        f"record {i}: positional row has {len(row)} values, expected {width} (model features)",
                    )
                out.append(dict(zip(feature_names, row, strict=True)))
            return out
        return data
    if type(data) is dict:
        lengths = {k: len(v) for k, v in data.items() if type(v) is list}
        if len(lengths) != len(data):
            bad = next(k for k, v in data.items() if type(v) is not list)
            raise RequestError(422, f"'{fmt}' columnar input: field {bad!r} must be a list of values")
        if len(set(lengths.values())) > 1:
            raise RequestError(422, f"'{fmt}' columnar input: columns have different lengths {lengths}")
        n = next(iter(lengths.values()), 0)
        names = list(data)
        cols = [data[k] for k in names]
        return [dict(zip(names, (c[i] for c in cols), strict=True)) for i in range(n)]
    raise RequestError(
        422, f"'{fmt}' must be a list of records or an object of columns, got {_type_name(data)}"
    )


class ServingState:
    """Everything the handlers need; one per app (i.e. per worker process)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model: ServingModel | None = None
        self.status = "starting"
        self.load_error: str | None = None
        self.predlog: PredictionLogger | None = None
        self.batcher: MicroBatcher | None = None
        self.metrics = metrics.RequestMetrics()
        self.api_key = settings.api_key.encode() if settings.api_key else None
        self._rid_prefix = os.urandom(5).hex()
        self._rid_counter = itertools.count(1)
        self._load_future: asyncio.Future[Any] | None = None
        self.max_body = settings.max_body_bytes
        self.max_records = settings.max_records

    def request_id(self, given: bytes | None) -> str:
        if given is not None and _REQUEST_ID_RE.match(given):
            return given.decode("ascii")
        return f"{self._rid_prefix}-{next(self._rid_counter):x}"

    # --------------------------------------------------------------- lifecycle
    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.status = "loading"
        self._load_future = loop.run_in_executor(None, load_model, self.settings.model_dir, self.settings)
        self._load_future.add_done_callback(self._loaded)

    def _loaded(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.status = "failed"
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model load failed: %s", self.load_error)
            return
        try:
            self._activate(fut.result())
        except Exception as exc:  # pragma: no cover - defensive
            self.status = "failed"
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model activation failed")

    def _activate(self, model: ServingModel) -> None:
        s = self.settings
        if s.prediction_log_enabled:
            self.predlog = PredictionLogger(
                s.prediction_log_dir,
                model_name=model.info.model_name,
                model_version=model.info.model_version,
                flush_seconds=s.prediction_log_flush_seconds,
                flush_rows=s.prediction_log_flush_rows,
                max_queue_rows=s.prediction_log_max_queue_rows,
                on_dropped=self.metrics.log_dropped,
                on_written=self.metrics.log_written,
            )
            self.predlog.start()
        if s.batching and model.batchable:
            self.batcher = MicroBatcher(
                model.predict_matrix,
                max_rows=s.batch_max_rows,
                max_wait_s=s.batch_max_wait_ms / 1000.0,
                on_batch=self.metrics.batch,
            )
        metrics.set_model(model.info.as_dict())
        self.model = model
        self.status = "ready"

    async def shutdown(self) -> None:
        if self.batcher is not None:
            self.batcher.flush_now()
        if self.predlog is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.predlog.close)
        if self.model is not None:
            self.model.close()
        metrics.mark_process_dead()

    # ----------------------------------------------------------------- scoring
    async def score(
        self,
        endpoint: str,
        body: bytes,
        content_type: bytes | None,
        source: str,
        request_id: str,
    ) -> tuple[int, bytes]:
        """Parse, validate, predict, log. Raises :class:`RequestError` for client errors."""
        model = self.model
        if model is None:
            raise RequestError(503, f"model not ready ({self.status})", "not_ready")
        if not _is_json_content_type(content_type):
            got = content_type.decode("latin-1") if content_type else "none"
            raise RequestError(
                415, f"Content-Type must be application/json, got {got}", "unsupported_media_type"
            )
        if len(body) > self.max_body:
            raise RequestError(413, f"request body too large (max {self.max_body} bytes)", "too_large")
        if not body:
            raise RequestError(400, "empty request body", "bad_request")
        obj, strict_json = _parse_json(body)
        if endpoint == PREDICT:
            records = _records_from_predict(obj)
        else:
            records = _records_from_mlflow(obj, model.spec.feature_names)
        n = len(records)
        if n == 0:
            raise RequestError(422, "no records: the records list is empty")
        if n > self.max_records:
            raise RequestError(413, f"too many records: {n} (max {self.max_records})", "too_large")
        encoded = model.encode(records)
        batcher = self.batcher
        if batcher is not None and n <= batcher.max_rows:
            scores = await batcher.submit(encoded.matrix)
        elif n > OFFLOAD_ROWS or not model.batchable:
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(None, model.predict, encoded, records)
        else:
            scores = model.predict(encoded, records)
        # What is answered, logged and counted is the calibrated probability (the threshold's scale).
        probs = model.probabilities(scores)
        labels = model.labels(probs)
        info = model.info
        if endpoint == PREDICT:
            out = orjson.dumps(
                {
                    "model_name": info.model_name,
                    "model_version": info.model_version,
                    "request_id": request_id,
                    "predictions": [
                        {"probability": p, "label": lab} for p, lab in zip(_json_floats(probs), labels, strict=True)
                    ],
                },
                option=_NUMPY,
            )
        else:
            out = orjson.dumps({"predictions": model.mlflow_predictions(scores, probs, records)}, option=_NUMPY)
        m = self.metrics
        m.predictions(endpoint, probs)
        if encoded.unseen:
            m.unseen(encoded.unseen)
        if self.predlog is not None:
            # /predict: the log keeps the request and response bodies as they are (nothing is
            # formatted per row); other payloads are logged as their records and outputs.
            if endpoint == PREDICT:
                raw = body if strict_json else None
                self.predlog.log(endpoint, request_id, time.time(), source, records, probs, labels, raw, out)
            else:
                self.predlog.log(endpoint, request_id, time.time(), source, records, probs, labels)
        return 200, out


def _error_body(message: str, request_id: str | None) -> bytes:
    return orjson.dumps({"error": message, "request_id": request_id})


class ServingApp(FastAPI):
    """FastAPI with a raw-ASGI fast path for the serving endpoints."""

    state_obj: ServingState

    def setup_fast_routes(self, state: ServingState) -> None:
        self.state_obj = state
        self._fast: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/predict"): self._predict,
            ("POST", "/invocations"): self._invocations,
            ("GET", "/health"): self._health,
            ("HEAD", "/health"): self._health,
            ("GET", "/ready"): self._ready,
            ("HEAD", "/ready"): self._ready,
            ("GET", "/version"): self._version,
            ("GET", "/metrics"): self._metrics,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            handler = self._fast.get((scope["method"], scope["path"]))
            if handler is not None:
                await handler(scope, receive, send)
                return
            await self._other(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        status_holder = [500]

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, send_wrapper)
        finally:
            self.state_obj.metrics.request("other", status_holder[0], time.perf_counter() - t0)

    # ---------------------------------------------------------------- scoring
    async def _predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._scoring(scope, receive, send, PREDICT)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._scoring(scope, receive, send, INVOCATIONS)

    async def _scoring(self, scope: Scope, receive: Receive, send: Send, endpoint: str) -> None:
        t0 = time.perf_counter()
        st = self.state_obj
        ctype = clen = api = auth = rid = None
        source = b"client"
        for k, v in scope["headers"]:
            if k == b"content-type":
                ctype = v
            elif k == b"content-length":
                clen = v
            elif k == b"x-api-key":
                api = v
            elif k == b"authorization":
                auth = v
            elif k == b"x-traffic-source":
                source = v
            elif k == b"x-request-id":
                rid = v
        request_id = st.request_id(rid)
        headers = [*_JSON_HEADERS, (b"x-request-id", request_id.encode())]
        batcher = st.batcher
        if batcher is not None:
            batcher.inflight += 1
        try:
            if st.api_key is not None:
                given = api
                if given is None and auth is not None and auth[:7].lower() == b"bearer ":
                    given = auth[7:].strip()
                if given is None or not hmac.compare_digest(given, st.api_key):
                    headers.append((b"www-authenticate", b"Bearer"))
                    raise RequestError(
                        401, "missing or invalid API key (X-API-Key or Authorization: Bearer)", "auth"
                    )
            if clen is not None:
                try:
                    length = int(clen)
                except ValueError:
                    raise RequestError(400, "invalid Content-Length header", "bad_request") from None
                if length > st.max_body:
                    raise RequestError(413, f"request body too large (max {st.max_body} bytes)", "too_large")
            msg = await receive()
            if msg["type"] != "http.request":
                return  # client went away
            body = msg.get("body", b"")
            if msg.get("more_body"):
                chunks = [body]
                size = len(body)
                while True:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        return
                    chunk = msg.get("body", b"")
                    size += len(chunk)
                    if size > st.max_body:
                        raise RequestError(
                            413, f"request body too large (max {st.max_body} bytes)", "too_large"
                        )
                    chunks.append(chunk)
                    if not msg.get("more_body"):
                        break
                body = b"".join(chunks)
            if batcher is not None:
                batcher.inflight -= 1
                batcher = None
            src = source.decode("ascii") if source == b"client" or _SOURCE_RE.match(source) else "invalid"
            status, out = await st.score(endpoint, body, ctype, src, request_id)
        except RequestError as exc:
            status, out = exc.status, _error_body(exc.message, request_id)
            st.metrics.error(endpoint, exc.kind)
        except Exception:
            log.exception("unhandled error in /%s (request %s)", endpoint, request_id)
            status, out = 500, _error_body("internal server error", request_id)
            st.metrics.error(endpoint, "internal")
        finally:
            if batcher is not None:
                batcher.inflight -= 1
        await self._send(send, status, out, headers)
        st.metrics.request(endpoint, status, time.perf_counter() - t0)

    # ------------------------------------------------------------ small ones
    async def _simple(self, send: Send, endpoint: str, status: int, payload: Any, t0: float) -> None:
        await self._send(send, status, orjson.dumps(payload), _JSON_HEADERS)
        self.state_obj.metrics.request(endpoint, status, time.perf_counter() - t0)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._simple(send, "health", 200, {"status": "ok"}, time.perf_counter())

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        status, payload = ready_payload(self.state_obj)
        await self._simple(send, "ready", status, payload, t0)

    async def _version(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        status, payload = version_payload(self.state_obj)
        await self._simple(send, "version", status, payload, t0)

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        body, ctype = metrics.render()
        await self._send(send, 200, body, [(b"content-type", ctype.encode())])
        self.state_obj.metrics.request("metrics", 200, time.perf_counter() - t0)


def ready_payload(st: ServingState) -> tuple[int, dict[str, Any]]:
    if st.model is not None:
        info = st.model.info
        return 200, {"status": "ready", "model_name": info.model_name, "model_version": info.model_version}
    payload: dict[str, Any] = {"status": st.status}
    if st.load_error:
        payload["error"] = st.load_error
    return 503, payload


def version_payload(st: ServingState) -> tuple[int, dict[str, Any]]:
    if st.model is None:
        return 503, {"error": f"model not ready ({st.status})"}
    return 200, {**st.model.info.as_dict(), "server_version": __version__}


# --------------------------------------------------------------------------- docs
class Prediction(BaseModel):
    probability: float = Field(description="Positive-class probability (calibrated, when the model has a map)")
    label: int = Field(description="int(probability >= threshold)")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    request_id: str
    predictions: list[Prediction]


class InvocationsResponse(BaseModel):
    predictions: list[Any] = Field(
        description="As `mlflow models serve`: probabilities (xgboost) or labels (sklearn)"
    )


class ErrorResponse(BaseModel):
    error: str = Field(description="What is wrong, naming the record index and field where relevant")
    request_id: str | None = None


class VersionResponse(BaseModel):
    model_name: str
    model_version: str
    run_id: str
    artifact_sha256: str
    flavor: str
    server_version: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in (
        (400, "Malformed JSON"),
        (401, "Missing/invalid API key (when MLOPS_SERVING_API_KEY is set)"),
        (413, "Body or record count over the limit"),
        (415, "Content-Type is not application/json"),
        (422, "Invalid records"),
        (503, "Model not loaded yet"),
    )
}


def _predict_body_schema(max_records: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["records"],
        "additionalProperties": False,
        "properties": {
            "records": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_records,
                "items": {"$ref": "#/components/schemas/PredictRecord"},
            }
        },
    }


def _invocations_body_schema() -> dict[str, Any]:
    rec = {"$ref": "#/components/schemas/PredictRecord"}
    return {
        "description": "MLflow scoring payload: exactly one of the formats below (optional 'params' is ignored).",
        "oneOf": [
            {
                "type": "object",
                "required": ["dataframe_split"],
                "properties": {
                    "dataframe_split": {
                        "type": "object",
                        "required": ["columns", "data"],
                        "properties": {
                            "columns": {"type": "array", "items": {"type": "string"}},
                            "data": {"type": "array", "items": {"type": "array"}},
                        },
                    }
                },
            },
            {
                "type": "object",
                "required": ["dataframe_records"],
                "properties": {"dataframe_records": {"type": "array", "items": rec}},
            },
            {"type": "object", "required": ["inputs"], "properties": {"inputs": {}}},
            {"type": "object", "required": ["instances"], "properties": {"instances": {}}},
        ],
    }


def create_app(settings: Settings | None = None) -> ServingApp:
    settings = settings or Settings.from_env()
    state = ServingState(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.startup()
        try:
            yield
        finally:
            await state.shutdown()

    app = ServingApp(
        title="mlops-serving",
        version=__version__,
        description=(
            'Churn model server. `POST /predict` takes `{"records": [...]}` (one object per customer, '
            "fields = model features, plus the optional id/time columns) and returns a probability and "
            "label per record. `POST /invocations` speaks MLflow's scoring protocol."
        ),
        lifespan=lifespan,
    )
    app.setup_fast_routes(state)
    app.state.serving = state

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return Response(
            _error_body(str(exc.detail), None), status_code=exc.status_code, media_type="application/json"
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(
        request: Request, exc: RequestValidationError
    ) -> Response:  # pragma: no cover
        return Response(_error_body(str(exc), None), status_code=422, media_type="application/json")

    # The routes below document the API and serve it if the fast path is bypassed
    # (e.g. HEAD requests or when mounted under another app).
    async def _fallback_score(request: Request, endpoint: str) -> Response:
        rid = state.request_id(request.headers.get("x-request-id", "").encode("latin-1") or None)
        ctype = request.headers.get("content-type")
        try:
            status, out = await state.score(
                endpoint,
                await request.body(),
                ctype.encode("latin-1") if ctype else None,
                request.headers.get("x-traffic-source", "client")[:64],
                rid,
            )
        except RequestError as exc:
            status, out = exc.status, _error_body(exc.message, rid)
        return Response(out, status_code=status, media_type="application/json")

    body_doc = {"required": True, "content": {"application/json": {}}}

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=_ERRORS,
        summary="Score records",
        openapi_extra={
            "requestBody": {
                **body_doc,
                "content": {"application/json": {"schema": _predict_body_schema(settings.max_records)}},
            }
        },
    )
    async def predict(request: Request) -> Response:
        """Score one or more records. Optional headers: `X-Traffic-Source` (logged, default `client`),
        `X-Request-ID` (echoed), `X-API-Key` / `Authorization: Bearer` when an API key is configured."""
        return await _fallback_score(request, PREDICT)

    @app.post(
        "/invocations",
        response_model=InvocationsResponse,
        responses=_ERRORS,
        summary="MLflow-compatible scoring",
        openapi_extra={
            "requestBody": {
                **body_doc,
                "content": {"application/json": {"schema": _invocations_body_schema()}},
            }
        },
    )
    async def invocations(request: Request) -> Response:
        """`dataframe_split`, `dataframe_records`, `inputs` or `instances`, as `mlflow models serve` accepts."""
        return await _fallback_score(request, INVOCATIONS)

    @app.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: 200 once the model is loaded and warmed up, else 503")
    async def ready() -> Response:
        status, payload = ready_payload(state)
        return Response(orjson.dumps(payload), status_code=status, media_type="application/json")

    @app.get("/version", response_model=VersionResponse, summary="Served model identity")
    async def version() -> Response:
        status, payload = version_payload(state)
        return Response(orjson.dumps(payload), status_code=status, media_type="application/json")

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics_route() -> Response:
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema and state.model is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if state.model is not None:
            record = state.model.spec.record_json_schema()
            record["example"] = state.model.spec.example_record()
            components["PredictRecord"] = record
            app.openapi_schema = schema
        else:
            components["PredictRecord"] = {
                "type": "object",
                "description": "Model features (the exact schema appears once the model is loaded)",
            }
        return schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app


app = create_app()

__all__ = ["app", "create_app", "ServingApp", "ServingState"]
