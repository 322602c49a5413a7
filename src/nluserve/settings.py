"""Service settings: one pydantic-settings object, built (never imported) and passed to create_app."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nluserve.tenancy.limits import MAX_BURST, MAX_QUOTA, MAX_RATE, MIN_RATE


def usable_cores() -> int:
    """CPU cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

    A container's CPU limit (Kubernetes ``resources.limits.cpu``, ``docker run --cpus``) is a
    CFS quota, not an affinity: a 4-CPU pod on a 32-core node sees 32 cores in its affinity.
    Sizing threads from that would run 8 times more inference threads than it may use.
    """
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, int(quota)))  # a fraction of a core rounds down, to 1 at least
    return max(1, cores)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, v1 ``cfs_quota_us``); None if none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


# Whole words only: "todo-cache.internal" is a host and a random key may spell "ToDo".
_PLACEHOLDER_WORDS = {"replace_me", "replace-me", "changeme", "change-me", "example-secret"}
_TODO = re.compile(r"(?<![A-Za-z0-9])TODO(?![A-Za-z0-9])")


def _is_placeholder(value: str) -> bool:
    raw = value.strip()
    words = set(re.split(r"[^a-z0-9_-]+", raw.lower()))
    return (
        not raw
        or "<" in raw
        or ">" in raw
        or bool(words & _PLACEHOLDER_WORDS)
        or bool(_TODO.search(raw))
    )


# Read from the environment where they apply (the model store, ONNX Runtime sessions), since
# they work outside `serve` too (`nluserve predict`, `load_model()`): not Settings fields, but
# settings all the same (docs/settings.md), which an env file may hold.
ENVIRONMENT_ONLY = frozenset({"NLUSERVE_MODELS_DIR", "NLUSERVE_ORT_THREADS"})


class Settings(BaseSettings):
    """Every field is also an ``NLUSERVE_<NAME>`` environment variable."""

    # env_ignore_empty: ``NLUSERVE_ADMIN_KEY=`` (what Compose passes for ``${VAR:-}`` when .env
    # lacks it) means unset, as it would in a shell script, not an empty secret.
    model_config = SettingsConfigDict(
        env_prefix="NLUSERVE_", env_file=None, extra="ignore", env_ignore_empty=True
    )

    host: str = Field(
        "127.0.0.1", description="bind address; loopback unless a proxy says otherwise"
    )
    port: int = Field(8000, ge=0, le=65535, description="bind port")
    workers: int = Field(1, ge=1, description="HTTP worker processes (gunicorn when > 1)")
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["general", "medical", "sentiment"],
        description="model names or directories to serve",
    )
    default_ner_model: str = Field("general", description="model of POST /v1/ner without `model`")
    sentiment_model: str = Field("sentiment", description="model of POST /v1/sentiment")
    data_dir: Path = Field(Path(".data"), description="SQLite database, spool and state")

    max_body_bytes: int = Field(1_048_576, gt=0, description="request body limit (413 above)")
    max_text_chars: int = Field(10_000, gt=0, description="characters per text (422 above)")
    max_total_chars: int = Field(100_000, gt=0, description="characters per call (422 above)")
    max_texts: int = Field(64, gt=0, description="texts per call (422 above)")

    max_requests: int = Field(
        20_000,
        ge=0,
        description="with several workers: recycle a worker after this many requests, "
        "plus up to 10 % jitter (0: never)",
    )
    keepalive_requests: int = Field(
        100,
        ge=0,
        description="close a client's keep-alive connection after this many requests "
        "(0: never), so pooled clients spread again over the workers",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="deadline per call: queued past it is 504"
    )
    client_timeout_s: float = Field(
        20.0,
        gt=0,
        description="seconds a client may take to send a request's headers, and to send "
        "each next part of its body (408 past it), as nginx's client_header_timeout and "
        "client_body_timeout",
    )
    max_queue_chars: int = Field(
        200_000, gt=0, description="queued characters per model before 503"
    )
    max_batch_texts: int = Field(32, gt=0, description="texts per inference batch")
    batch_tokens: int = Field(
        4096, gt=0, description="padded characters (longest x count) per batch"
    )
    inference_threads: int = Field(
        0,
        ge=0,
        description="inference threads per process; 0 = cores / workers (never more than the cores in all)",
    )
    inference_run_threads: int = Field(
        1,
        ge=1,
        description="intra-op threads of each graph run in the inference process, which then "
        "runs the thread budget divided by this at once: 2 on 2 cores halves a lone "
        "transformer-size call's latency for about 12 % of the peak (docs/serving.md)",
    )
    inference_merge: bool = Field(
        True,
        description="the inference process merges batches of the same model from different "
        "workers into one run, within the batch limits above (docs/serving.md)",
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="where models run: cpu, or cuda (onnxruntime-gpu; see inference_process)",
    )
    inference_process: Literal["auto", "on", "off"] = Field(
        "auto",
        description="run every model in one inference process that all workers feed; "
        "auto = on with cuda and several workers (one CUDA context and one copy of the weights)",
    )
    graceful_timeout_s: float = Field(20.0, gt=0, description="SIGTERM: time for in-flight calls")

    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="debug, info, warning, error or critical"
    )
    log_json: bool = Field(True, description="structured JSON logs (false: plain text)")
    api_docs: bool = Field(
        True,
        description="serve the interactive API docs and schema (/docs, /redoc, /openapi.json); "
        "false for a deployment that publishes its docs elsewhere",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="peers whose X-Forwarded-* headers are believed",
    )

    auth: bool = Field(True, description="require API keys/tokens (false: open, single-user)")
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL; default SQLite in data_dir"
    )
    redis_url: SecretStr | None = Field(None, description="Redis for quotas across machines")
    quota_fail_open: bool = Field(False, description="admit calls when Redis is unreachable")
    key_pepper: SecretStr | None = Field(
        None, description="HMAC pepper for API keys (required with PostgreSQL)"
    )
    admin_key: SecretStr | None = Field(None, description="admin API key to install on first start")
    jwt_issuer: str = Field("nluserve", description="`iss` of issued tokens")
    jwt_audience: str = Field("nluserve-api", description="`aud` of issued tokens")
    token_ttl_s: int = Field(900, gt=0, le=3600, description="token lifetime (at most 1 h)")
    auth_cache_s: float = Field(
        2.0, gt=0, le=10, description="how stale tenant status/revocations may be"
    )
    audit_text: bool = Field(False, description="store raw request text in the audit log")
    # The same bounds as a tenant created with explicit values (tenancy/limits.py).
    default_quota_daily: int = Field(
        10_000, ge=0, le=MAX_QUOTA, description="calls per UTC day for new tenants"
    )
    default_rate_per_s: float = Field(
        10.0, ge=MIN_RATE, le=MAX_RATE, description="sustained calls/s for new tenants"
    )
    default_burst: int = Field(20, gt=0, le=MAX_BURST, description="burst size for new tenants")

    @field_validator("models", "trusted_proxies", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        # From the environment: a JSON list, or the comma list that `serve --models` takes.
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list ({exc.msg})") from None
        return [part.strip() for part in text.split(",") if part.strip()]

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        # INFO and info alike, as the logging module takes them; anything else is refused
        # at start, before the admin tenant is made (a typo was a crash loop after it).
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("key_pepper", "admin_key", "database_url", "redis_url")
    @classmethod
    def _no_placeholders(cls, value: SecretStr | None) -> SecretStr | None:
        """Refuse example values copied from docs and manifests instead of real secrets."""
        if value is not None and _is_placeholder(value.get_secret_value()):
            raise ValueError("is a placeholder; set a real value (see docs/deploy.md)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        """The quota client's own parser: a bad URL is refused before any worker starts."""
        if value is not None:
            from nluserve.quota.resp import parse_url

            parse_url(value.get_secret_value())
        return value

    def open_without_auth(self) -> bool:
        """Whether anyone beyond this machine may call the models without a key."""
        if self.auth:
            return False
        if self.host == "localhost":
            return False
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name other than localhost
            return True

    def use_inference_process(self) -> bool:
        """Whether graphs run in the shared inference process (runtime/host.py).

        On a CPU, loading before the fork already gives one copy of the weights, and running
        in-process saves a socket round trip per batch, so ``auto`` keeps it off there.
        """
        if self.inference_process == "auto":
            return self.device == "cuda" and self.workers > 1
        return self.inference_process == "on"

    def preload_models(self) -> bool:
        """Load models once before fork (shared CPU pages) unless they go to a GPU.

        A CUDA context does not survive fork(), so on ``cuda`` without the inference process
        every worker opens its own session after the fork: one copy of the weights per worker
        in GPU memory. With the inference process the workers hold no session at all.
        """
        return self.device == "cpu" or self.use_inference_process()

    def thread_budget(self) -> int:
        """Graphs running at once on this machine, all processes together (<= the cores)."""
        per_worker = self.inference_threads or max(1, usable_cores() // self.workers)
        return per_worker * self.workers

    def inference_layout(self) -> tuple[int, int]:
        """(intra-op threads per graph run, runs at once) in the inference process: together
        never more threads than the budget."""
        budget = self.thread_budget()
        per_run = min(self.inference_run_threads, budget)
        runs = max(1, budget // per_run)
        if self.device == "cuda":
            # A GPU runs one graph's kernels at a time: a second run lets one batch's copies
            # and Python overlap the other's kernels; more would only queue inside ONNX
            # Runtime, where batches cannot merge (runtime/runqueue.py merges them here).
            runs = min(2, runs)
        return per_run, runs

    def threads_per_process(self) -> int:
        """Batch runner threads in each worker.

        In-process, workers x threads <= cores. With the inference process, which admits
        ``thread_budget()`` runs at a time from all workers in arrival order, each worker may
        have the whole budget in flight: a worker whose clients are busy uses every core while
        the others idle, instead of its share (keep-alive pins clients to one worker).
        """
        if self.use_inference_process():
            return self.thread_budget()
        return self.thread_budget() // self.workers


def ensure_data_dir(settings: Settings) -> Path:
    """The data directory holds the database, secrets and spool: owner-only access.

    A directory made for us by someone else (a Kubernetes emptyDir, a Docker tmpfs: owned by
    root, group-writable for the pod's fsGroup) cannot be chmod-ed by the service user; it is
    used as it is. The database and secret files in it are created 0600 all the same.
    """
    path = settings.data_dir
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o700)
    return path


def describe_invalid(exc: Exception) -> str:
    """One line naming each refused setting and why, never its value (values hold secrets:
    pydantic's own message quotes the input, a Redis or database URL with its password)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}"
            for e in errors(include_input=False, include_url=False)
        )
    return str(exc).splitlines()[0]  # SettingsError: names the field, not the value
