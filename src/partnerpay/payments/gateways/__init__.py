"""Payment gateways: the built-in ``sandbox`` and ``stripe``, each an adapter behind the
interface in :mod:`partnerpay.payments.gateway`, chosen by ``PARTNERPAY_GATEWAY``."""

from partnerpay.config import GatewayName, Settings
from partnerpay.payments.gateway import PaymentGateway


def gateway_for(settings: Settings) -> PaymentGateway:
    """The gateway the settings name (checked by ``Settings.require_startable``)."""
    if settings.gateway == GatewayName.STRIPE:
        from partnerpay.payments.gateways.stripe import StripeGateway

        return StripeGateway(settings)
    from partnerpay.payments.gateways.sandbox import SandboxGateway

    return SandboxGateway()
