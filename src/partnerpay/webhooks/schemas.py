import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from partnerpay.events.models import Topic, WebhookStatus
from partnerpay.wire import Timestamp, WireModel

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=2000)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Topics = Annotated[list[Topic], Field(min_length=1, max_length=len(Topic))]


class BasicCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Secret
    password: Secret


class TokenCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Secret


class BasicAuthentication(BaseModel):
    """Sent as `Authorization: Basic base64(username:password)`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["basic"]
    add_position: Literal["header"] = "header"
    data: BasicCredentials


class TokenAuthentication(BaseModel):
    """Sent as `Authorization: Bearer <token>`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["token"]
    add_position: Literal["header"] = "header"
    data: TokenCredentials


Authentication = Annotated[BasicAuthentication | TokenAuthentication, Field(discriminator="type")]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    url: Url = Field(description="An http or https URL that answers 2xx within the timeout.")
    status: WebhookStatus = WebhookStatus.ENABLED
    events: Topics
    authentication: Authentication | None = None


class WebhookUpdate(BaseModel):
    """Change a webhook: only the fields sent change (`authentication: null` removes it)."""

    model_config = ConfigDict(extra="forbid")

    webhook_id: uuid.UUID
    name: Name | None = None
    description: Description | None = None
    url: Url | None = None
    status: WebhookStatus | None = None
    events: Topics | None = None
    authentication: Authentication | None = None


class AuthenticationOut(WireModel):
    """The webhook's authentication, without its password or token."""

    type: str
    add_position: str
    data: dict[str, str]


class WebhookOut(WireModel):
    webhook_id: uuid.UUID
    party_id: uuid.UUID = Field(description="The partner the webhook belongs to.")
    name: str
    description: str | None = None
    url: str
    status: WebhookStatus
    events: list[Topic]
    authentication: AuthenticationOut | None = None
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The signing secret (`whsec_...`); shown only once.")


class WebhookResponse(WireModel):
    webhook: WebhookOut


class WebhookCreatedResponse(WireModel):
    webhook: WebhookCreatedOut


class WebhookList(WireModel):
    webhooks: list[WebhookOut]
