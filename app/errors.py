"""Errors a user can cause: each carries one sentence and the HTTP status that fits it."""

from typing import Any


class UserError(Exception):
    status_code = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        # More for API clients beside the sentence: field errors, the current revision.
        self.extra = extra


class Forbidden(UserError):
    status_code = 403


class NotFound(UserError):
    status_code = 404


class Conflict(UserError):
    status_code = 409


class Invalid(UserError):
    status_code = 422
