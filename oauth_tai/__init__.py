"""OAuth 2.0 trust association for WSGI applications."""

import logging

from oauth_tai.identity import Identity
from oauth_tai.middleware import TrustAssociationMiddleware

__all__ = ["Identity", "TrustAssociationMiddleware"]
__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
