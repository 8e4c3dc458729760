"""The one place that reads the environment (prefix ``AUDITOR_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".auditor"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AUDITOR_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Where embedded state lives.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file under AUDITOR_HOME."
    )
    broker_url: str | None = Field(default=None, description="None means in-process execution.")
    device: str = "auto"
    memory_budget_mb: int = Field(default=128, description="Peak working memory of the kNN engine.")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.home / 'auditor.db'}"


def get_settings() -> Settings:
    return Settings()
