"""Errors a user can cause: each carries one sentence and the HTTP status that fits it."""


class UserError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(UserError):
    status_code = 404


class Conflict(UserError):
    status_code = 409


class Invalid(UserError):
    status_code = 422
