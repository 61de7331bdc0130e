import uuid
from typing import Annotated, Any, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic_core import PydanticCustomError

from partnerpay.artifacts.models import ArtifactStatus, PaymentMethod, SurchargeChoice
from partnerpay.firms.models import AccountType
from partnerpay.invoices.models import Invoice
from partnerpay.money import AmountString, Currency, PercentString, format_minor
from partnerpay.payments.schemas import ArtifactPayment, PaymentOut
from partnerpay.wire import InputTimestamp, Timestamp, WireModel

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
LongText = Annotated[str, StringConstraints(max_length=2000)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
MAX_LINE_ITEMS = 200
MAX_NOTES = 50


def _check_redirect_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PydanticCustomError("invalid_url", "must be an absolute http or https URL")
    return url


RedirectUrl = Annotated[
    str, StringConstraints(max_length=2048), AfterValidator(_check_redirect_url)
]


class MatterFields(WireModel):
    external_id: ExternalId
    external_reference: ShortText | None = None
    description: LongText | None = None
    type: ShortText | None = None


class DebtorFields(WireModel):
    external_id: ExternalId
    name: ShortText | None = None
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    email: Email | None = None
    address: LongText | dict[str, ShortText | None] | None = None
    contact_number: Annotated[str, StringConstraints(max_length=50)] | None = None


class LineItemFields(WireModel):
    amount: AmountString
    name: ShortText | None = None
    description: LongText | None = None
    quantity: int = Field(default=1, ge=1, le=1_000_000, strict=True)
    tax_rate: PercentString | None = None


class MatterIn(MatterFields):
    model_config = ConfigDict(extra="forbid")


class DebtorIn(DebtorFields):
    model_config = ConfigDict(extra="forbid")


class LineItemIn(LineItemFields):
    model_config = ConfigDict(extra="forbid")


class InvoiceIn(BaseModel):
    """Create an invoice, or update the one this partner has with this `firm_id` and
    `external_id` (the whole invoice is replaced by what is sent)."""

    model_config = ConfigDict(extra="forbid")

    firm_id: uuid.UUID
    external_id: ExternalId = Field(description="The partner's id, unique per firm.")
    amount: AmountString
    currency: Currency | None = Field(default=None, description="Defaults to the firm's.")
    due_date: InputTimestamp | None = None
    description: LongText | None = None
    external_reference: ShortText | None = None
    settlement_account: AccountType | None = Field(
        default=None,
        validation_alias=AliasChoices("settlement_account", "settlement_account_type"),
        description="`Office` (the default) or `Trust`; alias `settlement_account_type`.",
    )
    settlement_account_id: uuid.UUID | None = None
    matter: MatterIn | None = None
    debtor: DebtorIn | None = None
    line_items: list[LineItemIn] | None = Field(default=None, max_length=MAX_LINE_ITEMS)
    notes: list[LongText] | None = Field(default=None, max_length=MAX_NOTES)
    payment_methods_override: list[PaymentMethod] | None = Field(default=None, min_length=1)
    surcharge_choice_override: SurchargeChoice = SurchargeChoice.DEFAULT
    payment_redirect_url: RedirectUrl | None = None

    @model_validator(mode="after")
    def _one_way_to_name_the_account(self) -> Self:
        if self.settlement_account is not None and self.settlement_account_id is not None:
            raise PydanticCustomError(
                "settlement_account_conflict",
                "give settlement_account or settlement_account_id, not both",
            )
        return self


class AdjustAmountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    new_amount: AmountString


class InvoiceOut(WireModel):
    invoice_id: uuid.UUID
    firm_id: uuid.UUID
    external_id: str
    amount: str
    amount_due: str
    currency: Currency
    status: ArtifactStatus
    payment_uri: str
    due_date: Timestamp | None = None
    description: str | None = None
    external_reference: str | None = None
    settlement_account: AccountType
    settlement_account_id: uuid.UUID
    matter: MatterFields | None = None
    debtor: DebtorFields | None = None
    line_items: list[LineItemFields] | None = None
    notes: list[str] | None = None
    payment_methods_override: list[PaymentMethod] | None = None
    surcharge_choice_override: SurchargeChoice
    payment_redirect_url: str | None = None
    payments: list[ArtifactPayment] = Field(default_factory=list)
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, invoice: Invoice, pay_base_url: str) -> "InvoiceOut":
        return cls(
            invoice_id=invoice.id,
            firm_id=invoice.firm_id,
            external_id=invoice.external_id,
            amount=invoice.amount,
            amount_due=format_minor(invoice.amount_due_minor),
            currency=Currency(invoice.currency),
            status=ArtifactStatus(invoice.status),
            payment_uri=f"{pay_base_url}/pay/{invoice.id}",
            due_date=invoice.due_date,
            description=invoice.description,
            external_reference=invoice.external_reference,
            settlement_account=AccountType(invoice.settlement_account_type),
            settlement_account_id=invoice.settlement_account_id,
            matter=_validated(MatterFields, invoice.matter),
            debtor=_validated(DebtorFields, invoice.debtor),
            line_items=[LineItemFields.model_validate(item) for item in invoice.line_items] or None,
            notes=invoice.notes,
            payments=[
                ArtifactPayment.of(
                    payment,
                    refunded_minor=invoice.refunded_minor_of(payment),
                    paid_out_minor=invoice.paid_out_minor_of(payment),
                )
                for payment in invoice.accepted_payments
            ],
            payment_methods_override=invoice.payment_methods_override,
            surcharge_choice_override=SurchargeChoice(invoice.surcharge_choice_override),
            payment_redirect_url=invoice.payment_redirect_url,
            created_at=invoice.created_at,
            updated_at=invoice.updated_at,
        )


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], data: dict[str, Any] | None) -> M | None:
    return None if data is None else model.model_validate(data)


class InvoiceResponse(WireModel):
    invoice: InvoiceOut


class InvoiceList(WireModel):
    invoices: list[InvoiceOut]
    has_more: bool
    next_cursor: str | None = None


class ExternalPaymentResponse(WireModel):
    payment: PaymentOut
    invoice: InvoiceOut
