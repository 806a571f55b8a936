"""kopf handlers, one module per concern. Importing this package registers all of them."""

from webrecord.controller.handlers import actions, create, delete, expire, monitor, pods  # noqa: F401
