"""Errors raised by ptfer_core. Each names the problem in words a user can act on."""


class PTferError(Exception):
    """Base class: every user-facing failure of the library."""


class ModelLoadError(PTferError):
    """The model name or path cannot be resolved or loaded."""


class NoLMHeadError(ModelLoadError):
    """The checkpoint has no masked-LM or causal-LM head."""


class DataError(PTferError):
    """The data directory, a relation or its facts are missing or malformed."""


class TemplateError(PTferError):
    """A prompt template is malformed (e.g. missing [X] or [Y])."""


class PromptFileError(PTferError):
    """A saved soft prompt is corrupt, incomplete or contains non-finite values."""


class DimensionMismatchError(PTferError):
    """Vectors of one width were given to a model of another width."""


class InputError(PTferError):
    """A user input (subject, setting) is invalid."""
