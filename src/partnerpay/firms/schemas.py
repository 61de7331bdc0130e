import re
import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from partnerpay.artifacts.models import ArtifactType
from partnerpay.firms.models import (
    AccountHolderType,
    AccountStatus,
    AccountType,
    Firm,
    FirmStatus,
    SettlementAccount,
)
from partnerpay.money import Currency, PercentString
from partnerpay.wire import Timestamp, WireModel

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]

# ISO 3166-1 alpha-2: the officially assigned codes.
_ISO_COUNTRY_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO
    BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ
    DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP
    GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG
    KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML
    MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE
    PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL
    SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM
    US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
"""
ISO_COUNTRY_CODES = frozenset(_ISO_COUNTRY_CODES.split())
AUSTRALIA = "AU"
BSB = re.compile(r"([0-9]{3})-?([0-9]{3})")
AUSTRALIAN_ACCOUNT_NUMBER = re.compile(r"[0-9]{5,9}")
VISIBLE_DIGITS = 3


def _assigned_country(code: str) -> str:
    if code not in ISO_COUNTRY_CODES:
        raise PydanticCustomError(
            "country_code", "must be a two-letter ISO 3166-1 country code, such as AU"
        )
    return code


def _lower_case(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


CountryCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{2}$"), AfterValidator(_assigned_country)
]
HolderType = Annotated[AccountHolderType, BeforeValidator(_lower_case)]


def masked(account_number: str) -> str:
    """An account number as the Partner API and events show it: all but its last three
    characters hidden (``*****678``). Only the operator sees the whole number."""
    return "*" * max(len(account_number) - VISIBLE_DIGITS, 0) + account_number[-VISIBLE_DIGITS:]


class AccountIn(BaseModel):
    """A bank account's details, checked alike wherever an account is given (a firm's
    onboarding, a new bank account). ``country_code`` comes first: the branch code and the
    account number that follow it are checked by its country's rules (an Australian
    account's branch code is a BSB, kept as ``123-456``; its number is 5 to 9 digits)."""

    model_config = ConfigDict(extra="forbid")

    country_code: CountryCode | None = None
    account_name: Name
    branch_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,20}$")]
    account_number: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,34}$")]

    @field_validator("branch_code")
    @classmethod
    def _branch_code_of_its_country(cls, branch_code: str, info: ValidationInfo) -> str:
        if info.data.get("country_code") != AUSTRALIA:
            return branch_code
        bsb = BSB.fullmatch(branch_code)
        if bsb is None:
            raise PydanticCustomError("bsb", "must be a BSB of 6 digits, such as 062-000")
        return f"{bsb[1]}-{bsb[2]}"

    @field_validator("account_number")
    @classmethod
    def _account_number_of_its_country(cls, account_number: str, info: ValidationInfo) -> str:
        if info.data.get("country_code") == AUSTRALIA and not (
            AUSTRALIAN_ACCOUNT_NUMBER.fullmatch(account_number)
        ):
            raise PydanticCustomError(
                "account_number", "must be 5 to 9 digits for an Australian account"
            )
        return account_number


class BankAccountIn(AccountIn):
    """A new bank account for a firm (FeeWise's BankAccount). `account_id`, `is_default`
    and `default_accounts` are set by the platform and must not be sent."""

    country_code: CountryCode
    account_type: AccountType
    account_holder_type: HolderType = Field(
        default=AccountHolderType.COMPANY,
        description="`company` (the default) or `individual`, in any case.",
    )
    external_id: ExternalId | None = Field(
        default=None, description="The partner's own id for the account."
    )
    address: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="The bank's address."
    )
    alias: Name | None = Field(default=None, description="The firm's own name for the account.")
    bank: Name | None = Field(default=None, description="The bank's name.")


class ReplaceSettlementAccountIn(BaseModel):
    """Move the open artifacts of a type to another account (FeeWise's
    UpdateArtifactAccountRequest)."""

    model_config = ConfigDict(extra="forbid")

    new_account_id: uuid.UUID
    artifact_type: ArtifactType


class AccountOut(WireModel):
    """A firm's default account of a type, as the firm shows it."""

    account_id: uuid.UUID
    account_name: str
    branch_code: str
    account_number: str
    country_code: str | None = None

    @classmethod
    def of(cls, account: SettlementAccount, *, reveal: bool = False) -> "AccountOut":
        """``reveal``: the whole account number, for the operator only."""
        return cls(
            account_id=account.id,
            account_name=account.account_name,
            branch_code=account.branch_code,
            account_number=account.account_number if reveal else masked(account.account_number),
            country_code=account.country_code,
        )


class _BankAccountFields(WireModel):
    """What a bank account's resource and its events share (FeeWise's BankAccount and
    FirmBankAccountEvent)."""

    account_id: uuid.UUID
    account_type: AccountType
    account_name: str
    account_holder_type: AccountHolderType
    account_number: str = Field(description="Masked: all but the last three characters are `*`.")
    branch_code: str
    address: str | None = None
    alias: str | None = None
    bank: str | None = None
    country_code: str | None = None
    status: AccountStatus
    is_default: bool

    @staticmethod
    def shared(account: SettlementAccount) -> dict[str, Any]:
        return {
            "account_id": account.id,
            "account_type": AccountType(account.account_type),
            "account_name": account.account_name,
            "account_holder_type": AccountHolderType(account.account_holder_type),
            "account_number": masked(account.account_number),
            "branch_code": account.branch_code,
            "address": account.address,
            "alias": account.alias,
            "bank": account.bank,
            "country_code": account.country_code,
            "status": AccountStatus(account.status),
            "is_default": account.is_default,
        }


class BankAccountOut(_BankAccountFields):
    """A firm's bank account (FeeWise's BankAccount)."""

    external_id: str | None = None
    default_accounts: list[AccountType] | None = Field(
        default=None, description="The account types this account is the default for."
    )
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, account: SettlementAccount) -> "BankAccountOut":
        return cls(
            **cls.shared(account),
            external_id=account.external_id,
            default_accounts=[AccountType(account.account_type)] if account.is_default else None,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class BankAccountEvent(_BankAccountFields):
    """The payload of the `firm.bank-account.*` events (FeeWise's FirmBankAccountEvent,
    with `is_default`)."""

    firm_id: uuid.UUID
    last_updated_at: Timestamp

    @classmethod
    def of(cls, account: SettlementAccount) -> "BankAccountEvent":
        return cls(
            **cls.shared(account), firm_id=account.firm_id, last_updated_at=account.updated_at
        )


class BankAccountResponse(WireModel):
    bank_account: BankAccountOut


class BankAccountsResponse(WireModel):
    """A firm's bank accounts that are not deleted, by type, each type's default first,
    then the oldest first."""

    office_accounts: list[BankAccountOut]
    trust_accounts: list[BankAccountOut]


class UpdatedCount(WireModel):
    updated: int = Field(description="How many artifacts were moved to the new account.")


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
    def of(cls, firm: Firm, *, reveal: bool = False) -> "FirmOut":
        """Each type's default account; ``reveal``: their whole numbers, for the operator."""
        office, trust = firm.account(AccountType.OFFICE), firm.account(AccountType.TRUST)
        return cls(
            firm_id=firm.id,
            legal_name=firm.legal_name,
            trading_name=firm.trading_name,
            external_id=firm.external_id,
            currency=Currency(firm.currency),
            status=FirmStatus(firm.status),
            office_account=AccountOut.of(office, reveal=reveal) if office else None,
            trust_account=AccountOut.of(trust, reveal=reveal) if trust else None,
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
