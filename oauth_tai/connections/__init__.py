"""A Connections-style application: profile, status updates, activity stream.

It trusts ``oauth_tai.identity`` in the WSGI environ and nothing else, so it
must run behind :class:`~oauth_tai.middleware.TrustAssociationMiddleware`.
"""
