"""The one place that reads the environment (prefix ``AUDITOR_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".auditor"


def _split(value: str, separator: str) -> list[str]:
    return [part.strip() for part in value.split(separator) if part.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDITOR_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Where embedded state lives.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under AUDITOR_HOME."
    )
    broker_url: str | None = Field(default=None, description="None means in-process execution.")
    device: str = "auto"
    memory_budget_mb: int = Field(
        default=128,
        ge=16,
        description="Working memory of the metrics (MiB): the default and the maximum of an audit's "
        "params.memory_budget_mb.",
    )
    # Operator maxima on the costly metric parameters a caller controls (auditor.pipeline.limits):
    # a caller may ask for less, never more.
    max_nearest_k: int = Field(default=100, ge=1, description="Largest params.nearest_k.")
    max_bootstrap: int = Field(default=10_000, ge=0, description="Largest params.bootstrap.")
    max_spectral_bootstrap: int = Field(
        default=200, ge=0, description="Largest params.spectral_bootstrap (O(d^3) each)."
    )
    max_kid_subsets: int = Field(default=1_000, ge=1, description="Largest params.kid_subsets.")
    max_kid_subset_size: int = Field(default=10_000, ge=2, description="Largest params.kid_subset_size.")
    max_num_modes: int = Field(default=1_024, ge=2, description="Largest params.num_modes.")
    max_artifact_mb: int = Field(
        default=64,
        ge=0,
        le=1024,  # PostgreSQL's bytea holds at most 1 GiB
        description="Largest per-sample diagnostics stored with an audit (MiB, every side's parquet "
        "together); above it the audit stores none and warns (DiagnosticsWarning). 0 = never store.",
    )

    previews: bool = Field(
        default=True,
        description="Previews of real and synthetic samples in reports (thumbnails, texts, table rows): "
        "off (AUDITOR_PREVIEWS=off) makes none and serves none of those already stored.",
    )

    # Storage and inputs.
    artifact_root: str | None = Field(
        default=None,
        description="Artifact store (embedding cache, shards): a directory or s3:// URI; "
        "default AUDITOR_HOME/artifacts. Must be shared by the API and every worker.",
    )
    data_roots: str | None = Field(
        default=None,
        description="Colon-separated directories datasets may be read from; unset = unrestricted "
        "(the local CLI). The service should always set it.",
    )
    weights_dir: Path | None = Field(
        default=None, description="Model weights directory (checked by SHA-256)."
    )
    remote_schemes: str = Field(
        default="", description="Comma-separated remote URI schemes, e.g. s3,gs,https."
    )

    # Dataset fetching and reading limits (auditor.datasets.netguard / options / sources): operator
    # ceilings that dataset options may lower but never raise. Defaults match auditor.datasets.sources.
    remote_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names and CIDR networks http(s) datasets may be fetched from "
        "although internal (loopback, private, link-local...), e.g. minio.internal,10.0.0.0/8; "
        "unset = public addresses only.",
    )
    max_download_bytes: int = Field(
        default=10 << 30, ge=1, description="Largest remote file downloaded (10 GiB)."
    )
    max_archive_bytes: int = Field(
        default=16 << 30, ge=1, description="Largest decompressed size of one archive or shard (16 GiB)."
    )
    max_member_bytes: int = Field(
        default=64 << 20,
        ge=1,
        description="Largest image / archive member read (64 MiB); the default and maximum of the "
        "max_member_bytes dataset option.",
    )
    max_samples: int | None = Field(
        default=None,
        ge=1,
        description="Most samples audited per side; the default and maximum of the max_samples "
        "dataset option (unset = no maximum).",
    )

    # The HTTP API.
    cors_origins: str = Field(default="", description="Comma-separated allowed CORS origins.")
    max_request_bytes: int = Field(default=1_048_576, description="Largest accepted request body.")
    auth_required: bool = Field(default=True, description="Require an API key on /v1 routes.")

    # The API client (`auditor submit / wait / gate`).
    api_url: str = Field(default="http://127.0.0.1:8000", description="Where the auditor API listens.")
    api_key: str | None = Field(
        default=None,
        description="API key for the client; default: the key `auditor serve` wrote to AUDITOR_HOME.",
    )

    # Workers.
    heartbeat_timeout_s: float = Field(
        default=300.0, description="A running audit with no heartbeat for this long is stuck."
    )
    sweep_interval_s: float = Field(default=30.0, description="How often stuck audits are looked for.")
    visibility_timeout_s: float = Field(
        default=3600.0, description="Redis: an unacknowledged task is redelivered after this long."
    )
    task_max_retries: int = Field(default=3, description="Retries of transient failures (storage, DB).")
    embed_shard_size: int = Field(default=50_000, description="Samples per embedding shard (one task each).")

    # Webhooks (auditor.webhooks, auditor.service.webhooks): the URL rules of remote fetching, with
    # settings of their own (allowing an internal dataset store is not allowing internal receivers).
    webhook_schemes: str = Field(
        default="https",
        description="Comma-separated URL schemes webhooks may use: https, and http only if listed.",
    )
    webhook_allow_hosts: str = Field(
        default="",
        description="Comma-separated host names and CIDR networks webhooks may be sent to although "
        "internal (loopback, private, link-local...); unset = public addresses only.",
    )
    max_webhooks_per_project: int = Field(default=10, ge=0, description="Subscriptions per project.")
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Per attempt: connecting, sending, and the answer's headers."
    )
    webhook_max_attempts: int = Field(default=6, ge=1, le=20, description="Attempts per delivery.")
    webhook_backoff_s: float = Field(
        default=30.0,
        ge=0,
        description="Wait after the first failed attempt; each later wait is 4 times the one before "
        "(30 s, 2 min, 8 min, 32 min, 2 h 8 min).",
    )
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="How often a sender looks for deliveries that are due."
    )
    webhook_concurrency: int = Field(default=4, ge=1, le=64, description="Attempts in flight per sender.")
    public_url: str | None = Field(
        default=None,
        description="The API's address as webhook receivers reach it (links in webhook bodies); "
        "unset: the links are paths.",
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'auditor.db'}"

    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str(self.home / "artifacts")

    def api_key_file(self) -> Path:
        """Where the embedded `auditor serve` keeps the admin key it created (mode 0600)."""
        return self.home / "api.key"

    def resolved_api_key(self) -> str | None:
        if self.api_key:
            return self.api_key
        path = self.api_key_file()
        return path.read_text().strip() if path.is_file() else None

    def data_root_paths(self) -> list[Path] | None:
        return [Path(part) for part in _split(self.data_roots, ":")] if self.data_roots else None

    def remote_scheme_set(self) -> frozenset[str]:
        return frozenset(_split(self.remote_schemes.lower(), ","))

    def remote_allow_host_list(self) -> list[str]:
        return _split(self.remote_allow_hosts, ",")

    @field_validator("remote_allow_hosts")
    @classmethod
    def _check_allow_hosts(cls, value: str) -> str:
        from auditor.datasets.netguard import HostPolicy  # stdlib only: cheap, and no import cycle

        HostPolicy.parse(_split(value, ","))  # a bad entry fails at start-up, naming it
        return value

    def webhook_scheme_set(self) -> frozenset[str]:
        return frozenset(_split(self.webhook_schemes.lower(), ","))

    def webhook_allow_host_list(self) -> list[str]:
        return _split(self.webhook_allow_hosts, ",")

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _check_webhook_allow_hosts(cls, value: str) -> str:
        from auditor.datasets.netguard import ALLOW_SETTING, HostPolicy

        try:
            HostPolicy.parse(_split(value, ","))
        except ValueError as exc:
            raise ValueError(str(exc).replace(ALLOW_SETTING, "AUDITOR_WEBHOOK_ALLOW_HOSTS")) from None
        return value

    @field_validator("webhook_schemes")
    @classmethod
    def _check_webhook_schemes(cls, value: str) -> str:
        unknown = set(_split(value.lower(), ",")) - {"http", "https"}
        if unknown:
            raise ValueError(f"AUDITOR_WEBHOOK_SCHEMES: webhooks use http(s) only, not {sorted(unknown)}")
        return value

    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins, ",")


def get_settings() -> Settings:
    return Settings()
