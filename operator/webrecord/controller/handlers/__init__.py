"""kopf handlers, one module per concern. Importing this package registers all of them."""

from webrecord.controller.handlers import (  # noqa: F401
    actions,
    create,
    delete,
    expire,
    live,
    monitor,
    observe,
    pods,
)
