"""Settings, read from ``PARTNERPAY_*`` environment variables."""

from enum import StrEnum
from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERPAY_", extra="ignore")

    database_url: str = "sqlite:///./var/partnerpay.db"
    public_base_url: str = "http://127.0.0.1:8000"
    env: Environment = Environment.SANDBOX
    db_pool_size: int = 10
    max_body_bytes: int = 1_048_576

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pay_base_url(self) -> str:
        return self.public_base_url.rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
