"""The OAuth 2.0 provider: consumers, users, grants, tokens and their pages."""
