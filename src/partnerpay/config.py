"""Settings, read from ``PARTNERPAY_*`` environment variables."""

from enum import StrEnum
from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class GatewayName(StrEnum):
    SANDBOX = "sandbox"
    STRIPE = "stripe"


STRIPE_API_BASE = "https://api.stripe.com"
STRIPE_JS_URL = "https://js.stripe.com/v3/"


class ConfigurationError(Exception):
    """Settings a process must not start with; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTNERPAY_", extra="ignore")

    database_url: str = "sqlite:///./var/partnerpay.db"
    public_base_url: str = "http://127.0.0.1:8000"
    env: Environment = Environment.SANDBOX
    db_pool_size: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_header_bytes: int = Field(default=32_768, gt=0, description="request line and headers")
    max_headers: int = Field(default=100, gt=0)
    request_timeout: float = Field(default=30.0, gt=0, description="seconds for head and body")
    rate_limit: float = Field(default=100.0, ge=0, description="per partner; 0: no limit")
    auth_failure_rate_limit: float = Field(
        default=10.0, ge=0, description="failed authentications per client address; 0: no limit"
    )
    forwarded_allow_ips: str = Field(
        default="", description="proxies whose X-Forwarded-For is the client's address"
    )
    auth_cache_seconds: float = Field(default=5.0, ge=0, description="0: verify every request")
    worker_threads: int = Field(default=8, ge=1, description="per process, for blocking work")
    webhook_retry_schedule: str = "5,300,1800,7200,18000,36000,36000"
    webhook_timeout: float = Field(default=15.0, gt=0)
    webhook_disable_after: float = Field(default=5 * 24 * 3600, gt=0)
    webhook_concurrency: int = Field(default=128, ge=1)
    webhook_poll_interval: float = Field(default=1.0, gt=0)
    run_dispatcher: bool = True
    payment_attempts_per_address: int = Field(
        default=20, ge=0, description="per client address per window, per process; 0: no limit"
    )
    payment_attempts_per_invoice: int = Field(
        default=10, ge=0, description="per invoice per window, per process; 0: no limit"
    )
    payment_attempts_window: float = Field(default=60.0, gt=0, description="seconds")
    card_declines_limit: int = Field(
        default=5, ge=0, description="declines on one invoice per window; 0: no limit"
    )
    card_declines_window: float = Field(default=900.0, gt=0, description="seconds")
    gateway: GatewayName = GatewayName.SANDBOX
    stripe_secret_key: str = ""
    stripe_publishable_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = STRIPE_API_BASE
    stripe_js_url: str = STRIPE_JS_URL
    stripe_timeout: float = Field(default=20.0, gt=0, description="seconds per Stripe call")
    reconcile_interval: float = Field(
        default=300.0, gt=0, description="seconds between asks about unsettled payments"
    )
    payout_interval: float = Field(
        default=86_400.0, gt=0, description="seconds between payout runs"
    )
    # The platform's own account payouts are paid from, as its bank knows it, for the ABA
    # files of AUD payouts (payouts/bankfiles.py). The defaults are sandbox values that no
    # bank would take; production refuses to write a file with any of them.
    aba_institution: str = Field(default="CBA", description="the bank's 3-letter abbreviation")
    aba_user_name: str = Field(default="PARTNERPAY SANDBOX", description="user preferred name")
    aba_user_id: str = Field(default="000000", description="6-digit APCA user id")
    aba_bsb: str = "000-000"
    aba_account_number: str = "123456789"
    aba_remitter_name: str = Field(default="PARTNERPAY TEST", description="on payees' statements")

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        delays = [part.strip() for part in value.split(",") if part.strip()]
        if not all(part.isascii() and part.replace(".", "", 1).isdigit() for part in delays):
            raise ValueError("must be comma-separated seconds, such as 5,300,1800")
        return ",".join(delays)

    @property
    def retry_delays(self) -> list[float]:
        """Seconds to wait before each retry: N delays mean N retries, N + 1 attempts."""
        return [float(part) for part in self.webhook_retry_schedule.split(",") if part]

    def require_startable(self) -> None:
        """Refuse what a serving process must never run with: production taking card
        numbers on partnerpay's own page (the sandbox gateway), or Stripe without its keys.
        """
        if self.env == Environment.PRODUCTION and self.gateway == GatewayName.SANDBOX:
            raise ConfigurationError(
                "PARTNERPAY_ENV=production needs a real gateway (PARTNERPAY_GATEWAY=stripe): "
                "the sandbox gateway takes card numbers on partnerpay's own page and moves "
                "no money"
            )
        if self.gateway == GatewayName.STRIPE:
            missing = [
                f"PARTNERPAY_{name.upper()}"
                for name in ("stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret")
                if not getattr(self, name)
            ]
            if missing:
                raise ConfigurationError(
                    f"PARTNERPAY_GATEWAY=stripe needs {', '.join(missing)} (README, "
                    '"Taking real payments")'
                )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pay_base_url(self) -> str:
        return self.public_base_url.rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
