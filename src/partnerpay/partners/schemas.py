from pydantic import BaseModel, ConfigDict, Field

from partnerpay.wire import Timestamp, WireModel

MAX_PREVIOUS_KEY_HOURS = 24 * 90


class RotateKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    previous_key_expires_hours: int = Field(
        default=48,
        ge=0,
        le=MAX_PREVIOUS_KEY_HOURS,
        strict=True,
        description="How long the keys in use now keep working; 0 stops them at once.",
    )


class RotateKeyResponse(WireModel):
    api_key: str = Field(description="The new key. It is shown only this once.")
    previous_key_expires_at: Timestamp
