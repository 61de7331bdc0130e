import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from partnerpay.firms.models import AccountType, Firm, FirmStatus, SettlementAccount
from partnerpay.money import Currency, PercentString
from partnerpay.wire import Timestamp, WireModel

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]


def masked_account_number(number: str) -> str:
    """An account number as the Partner API shows it: all but its last three characters
    hidden. Only the operator sees whole numbers."""
    return "*" * max(len(number) - 3, 0) + number[-3:]


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_name: Name
    branch_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,20}$")]
    account_number: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,34}$")]
    country_code: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None


class AccountOut(WireModel):
    account_id: uuid.UUID
    account_name: str
    branch_code: str
    account_number: str
    country_code: str | None = None

    @classmethod
    def of(cls, account: SettlementAccount) -> "AccountOut":
        return cls(
            account_id=account.id,
            account_name=account.account_name,
            branch_code=account.branch_code,
            account_number=account.account_number,
            country_code=account.country_code,
        )


class FirmCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    legal_name: Name | None = Field(default=None, description="Defaults to the trading name.")
    trading_name: Name
    external_id: ExternalId | None = Field(
        default=None, description="The partner's own id for the firm, unique per partner."
    )
    currency: Currency = Currency.AUD
    office_account: AccountIn | None = None
    trust_account: AccountIn | None = None
    metadata: dict[Annotated[str, StringConstraints(max_length=40)], MetadataValue] = Field(
        default_factory=dict, max_length=50
    )
    surcharge_percent: PercentString | None = Field(
        default=None,
        description="Card surcharge the payer bears when surcharging applies; sets it on.",
    )


class FirmOut(WireModel):
    firm_id: uuid.UUID
    legal_name: str
    trading_name: str
    external_id: str | None = None
    currency: Currency
    status: FirmStatus
    office_account: AccountOut | None = None
    trust_account: AccountOut | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    surcharge_enabled: bool
    surcharge_percent: str
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, firm: Firm) -> "FirmOut":
        office, trust = firm.account(AccountType.OFFICE), firm.account(AccountType.TRUST)
        return cls(
            firm_id=firm.id,
            legal_name=firm.legal_name,
            trading_name=firm.trading_name,
            external_id=firm.external_id,
            currency=Currency(firm.currency),
            status=FirmStatus(firm.status),
            office_account=AccountOut.of(office) if office else None,
            trust_account=AccountOut.of(trust) if trust else None,
            metadata=firm.metadata_,
            surcharge_enabled=firm.surcharge_enabled,
            surcharge_percent=firm.surcharge_percent,
            created_at=firm.created_at,
            updated_at=firm.updated_at,
        )


class FirmResponse(WireModel):
    firm: FirmOut


class FirmList(WireModel):
    firms: list[FirmOut]
    has_more: bool
    next_cursor: str | None = None
