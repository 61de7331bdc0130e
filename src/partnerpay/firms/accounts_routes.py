"""The Partner API's bank account routes (FeeWise's BankAccountApi) and the call that moves
a firm's open artifacts from one account to another."""

from fastapi import APIRouter, Response

from partnerpay.dependencies import SessionDep, SettingsDep, UnitOfWorkRoute
from partnerpay.firms import accounts
from partnerpay.firms.models import AccountType
from partnerpay.firms.schemas import (
    BankAccountIn,
    BankAccountOut,
    BankAccountResponse,
    BankAccountsResponse,
    ReplaceSettlementAccountIn,
    UpdatedCount,
)
from partnerpay.partners.dependencies import PartnerDep
from partnerpay.problems import problem_responses
from partnerpay.wire import ModelResponse

router = APIRouter(prefix="/firms/{firm_id}", tags=["Bank accounts"], route_class=UnitOfWorkRoute)

PROBLEMS = problem_responses(400, 404, 409)


@router.post(
    "/accounts",
    status_code=201,
    summary="Create a bank account",
    responses=PROBLEMS,
    response_model=BankAccountOut,
)
def create_bank_account(
    session: SessionDep, partner: PartnerDep, firm_id: str, body: BankAccountIn
) -> ModelResponse:
    """Add an Office or Trust account to the firm. It is `Valid` at once: its format is
    checked (an Australian account's `branch_code` is a BSB, kept as `123-456`, and its
    number 5 to 9 digits), and no bank is asked. The firm's first account of a type is
    that type's default. The same type, branch code and account number as one of the
    firm's accounts is 409 `bank_account_already_exists`."""
    account = accounts.create_account(session, partner.id, firm_id, body)
    return ModelResponse(BankAccountOut.of(account), status_code=201)


@router.get(
    "/accounts",
    summary="List bank accounts",
    responses=PROBLEMS,
    response_model=BankAccountsResponse,
)
def list_bank_accounts(session: SessionDep, partner: PartnerDep, firm_id: str) -> ModelResponse:
    """The firm's accounts that are not deleted, by type: each type's default first, then
    the oldest first."""
    listed = [BankAccountOut.of(a) for a in accounts.list_accounts(session, partner.id, firm_id)]
    return ModelResponse(
        BankAccountsResponse(
            office_accounts=[a for a in listed if a.account_type == AccountType.OFFICE],
            trust_accounts=[a for a in listed if a.account_type == AccountType.TRUST],
        )
    )


@router.get(
    "/accounts/{account_id}",
    summary="Get a bank account",
    responses=PROBLEMS,
    response_model=BankAccountOut,
)
def get_bank_account(
    session: SessionDep, partner: PartnerDep, firm_id: str, account_id: str
) -> ModelResponse:
    account = accounts.get_account(session, partner.id, firm_id, account_id)
    return ModelResponse(BankAccountOut.of(account))


@router.delete(
    "/accounts/{account_id}", status_code=204, summary="Delete a bank account", responses=PROBLEMS
)
def delete_bank_account(
    session: SessionDep, partner: PartnerDep, firm_id: str, account_id: str
) -> Response:
    """Delete an account nothing needs any more: 409 `bank_account_in_use` while an invoice
    that is neither `Paid` nor `Voided` settles to it, while it is its type's default and
    the firm has other accounts of that type (make another the default first), or while it
    is the only Office account of an `Active` firm. Its record is kept for the payments
    made to it."""
    accounts.delete_account(session, partner.id, firm_id, account_id)
    return Response(status_code=204)


@router.post(
    "/accounts/{account_id}/default",
    summary="Set the firm's default bank account",
    responses=PROBLEMS,
    response_model=BankAccountResponse,
)
def set_default_bank_account(
    session: SessionDep, partner: PartnerDep, firm_id: str, account_id: str
) -> ModelResponse:
    """Make the account its type's default, which invoices naming only
    `settlement_account` settle to; the previous default stops being one."""
    account = accounts.set_default(session, partner.id, firm_id, account_id)
    return ModelResponse(BankAccountResponse(bank_account=BankAccountOut.of(account)))


@router.post(
    "/artifacts/settlement-account/{settlement_account_id}/replace",
    summary="Move unpaid artifacts to another settlement account",
    responses=PROBLEMS,
    response_model=UpdatedCount,
)
def replace_settlement_account(
    session: SessionDep,
    settings: SettingsDep,
    partner: PartnerDep,
    firm_id: str,
    settlement_account_id: str,
    body: ReplaceSettlementAccountIn,
) -> ModelResponse:
    """Settle the firm's `Submitted` artifacts of `artifact_type` that settle to this
    account to `new_account_id` instead: one of the firm's accounts of the same type (409
    `invalid_settlement_account` otherwise). `Authorised` ones, with a payment still
    clearing, stay until it has cleared. Each one moved reports `invoice.updated`."""
    moved = accounts.replace_settlement_account(
        session, partner.id, firm_id, settlement_account_id, body, settings.pay_base_url
    )
    return ModelResponse(UpdatedCount(updated=moved))
