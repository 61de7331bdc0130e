"""Payment gateways: the interface (``base``) and the built-in ``sandbox``, each processor
in a module of its own beside them."""
