"""The package's exception tree.

Callers catch :class:`OAuthTaiError` for anything raised on purpose here;
the subclasses name the condition and carry what a caller needs to act.
"""


class OAuthTaiError(Exception):
    """Root of every error raised on purpose by oauth-tai."""


class ConfigurationError(OAuthTaiError):
    """A setting is missing or has a value that cannot be used."""


class ProviderUnavailable(OAuthTaiError):
    """The provider could not give an answer about a token.

    Distinct from an inactive token: the middleware answers 503 with
    ``Retry-After`` instead of 401, so a consumer keeps its token.
    """

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RegistryError(OAuthTaiError):
    """A change to the consumer registry or the user directory was refused."""


class NotFound(RegistryError):
    """The named consumer or user does not exist."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}")
        self.kind = kind
        self.name = name


class AlreadyExists(RegistryError):
    """A consumer or user with that name is already registered."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"a {kind} named {name!r} already exists")
        self.kind = kind
        self.name = name


class InvalidValue(RegistryError):
    """A field of a consumer or user has a value that is not allowed."""


class DatabaseUnavailable(OAuthTaiError):
    """The database cannot be reached, or refused the connection.

    ``where`` is the database URL with any password hidden.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"cannot use the database {where}: {reason.strip()}")
        self.where = where
        self.reason = reason


class SchemaTooNew(OAuthTaiError):
    """The database was upgraded by a newer oauth-tai than this one.

    Running older code on it could misread what the newer steps changed, so
    nothing is done; upgrade oauth-tai instead.
    """

    def __init__(self, version: int, latest: int) -> None:
        super().__init__(
            f"the database schema is at version {version}, but this oauth-tai "
            f"knows versions up to {latest}: upgrade oauth-tai"
        )
        self.version = version
        self.latest = latest
