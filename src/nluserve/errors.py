"""Errors raised by the runtime and services; the HTTP and CLI layers map them to responses."""


class NluserveError(Exception):
    """Base class for errors with a message meant for the user."""


class ModelNotFoundError(NluserveError):
    """No bundled model of that name and no model directory at that path."""


class ModelIntegrityError(NluserveError):
    """A model directory is incomplete, corrupted, or its manifest is invalid."""


def shown(items: list[str], limit: int = 10) -> str:
    """A client's list quoted back in an error, at most ``limit`` of it: an answer must not
    grow with whatever the request sent (60,000 unknown labels)."""
    if len(items) <= limit:
        return str(items)
    return f"{items[:limit]} and {len(items) - limit} more"


class UnknownLabelError(NluserveError):
    """A requested entity type is not one of the model's labels or aliases."""

    def __init__(self, unknown: list[str], valid: list[str]) -> None:
        self.unknown = unknown
        self.valid = valid
        super().__init__(f"unknown label(s) {shown(unknown)}; valid: {valid}")


class DataFormatError(NluserveError):
    """An evaluation or training file is in none of the supported formats."""


class CheckpointError(NluserveError):
    """A directory is not a Hugging Face checkpoint that ``nluserve model import`` can convert."""


class ConflictError(NluserveError):
    """A record with that unique name already exists."""


class StoreUnavailableError(NluserveError):
    """A backing store (database) cannot be reached and nothing cached can stand in."""


class InferenceUnavailableError(NluserveError):
    """The shared inference process cannot be reached (it is starting or restarting)."""
