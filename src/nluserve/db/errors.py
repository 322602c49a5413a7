"""Which database errors mean "the store is away, try later" rather than a bug or bad data."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# What a lost or refused connection raises: a down server, a full pool (TimeoutError), an
# SQLite database locked past its busy timeout.
UNREACHABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def unreachable(exc: BaseException) -> bool:
    """The database (or the way to it) is away: try again later."""
    return isinstance(exc, UNREACHABLE | OSError | TimeoutError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )


def refused_as_data(exc: BaseException) -> bool:
    """The database refused these rows (a value or a constraint), not the connection."""
    return isinstance(exc, sa_exc.DataError | sa_exc.IntegrityError)
