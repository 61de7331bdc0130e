"""``serve --demo``: the partner, key and firm the integration guide's examples use."""

import uuid

from sqlalchemy.orm import Session

from partnerpay.firms.models import Firm, FirmStatus
from partnerpay.firms.schemas import AccountIn, FirmCreate
from partnerpay.firms.service import create_firm
from partnerpay.partners.service import ensure_partner_key

DEMO_PARTNER_ID = uuid.UUID("01786490-a44f-4c22-9ed6-cec4f9fde87b")
DEMO_API_KEY = "15ae4452-a6f8-411c-b49b-0cc8231b4a3d"
DEMO_FIRM_ID = uuid.UUID("7f623e2d-270d-8ad8-2e13-b7bfd022703e")


def sandbox_account(owner: str, kind: str) -> AccountIn:
    """Placeholder bank details for firms created without real ones (demo and admin CLI)."""
    return AccountIn(
        account_name=f"{owner} {kind} Account",
        branch_code="000-000",
        account_number="000000001",
        country_code="AU",
    )


def seed_demo(session: Session) -> None:
    """Create what is missing, and make sure the demo key works; safe to run every start."""
    ensure_partner_key(session, DEMO_PARTNER_ID, "Demo practice-management system", DEMO_API_KEY)
    if session.get(Firm, DEMO_FIRM_ID) is None:
        name = "Harbour Legal"
        create_firm(
            session,
            DEMO_PARTNER_ID,
            FirmCreate(
                legal_name="Harbour Legal Pty Ltd",
                trading_name=name,
                external_id="demo-firm",
                office_account=sandbox_account(name, "Office"),
                trust_account=sandbox_account(name, "Trust"),
            ),
            status=FirmStatus.ACTIVE,
            firm_id=DEMO_FIRM_ID,
        )
