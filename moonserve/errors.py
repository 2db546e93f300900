"""Model Studio's error codes, one class each.

Raise these anywhere below the HTTP layer; `moonserve.api.errors` turns them into Model Studio's
error body (`{"error": {"message", "type", "param", "code"}, "request_id"}`) in exactly one place.
"""

from __future__ import annotations


class ModelStudioError(Exception):
    status: int = 500
    code: str = "InternalError"
    type: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self, request_id: str) -> dict:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code},
            "request_id": request_id,
        }


class InvalidParameter(ModelStudioError):
    """400: a bad field, value or combination; the message names the field."""

    status = 400
    code = "invalid_parameter_error"
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidParameter):
    """400: the prompt does not fit the deployment's context. Each protocol words it the way its
    clients recognise (Claude Code's "prompt is too long", Codex's `context_length_exceeded`)."""

    def __init__(self, tokens: str, limit: int):
        super().__init__(f"Range of input length should be [1, {limit}]; the prompt is {tokens} tokens",
                         param="messages")
        self.tokens = tokens
        self.limit = limit


class InputDownloadFailed(ModelStudioError):
    status = 400
    code = "BadRequest.InputDownloadFailed"
    type = "invalid_request_error"


class InvalidApiKey(ModelStudioError):
    status = 401
    code = "invalid_api_key"
    type = "invalid_request_error"

    def __init__(self, message: str = "Incorrect API key provided. ", **kw):
        super().__init__(message, **kw)


class ModelAccessDenied(ModelStudioError):
    """403: the workspace has not activated the model."""

    status = 403
    code = "Model.AccessDenied"
    type = "invalid_request_error"


class ModelNotFound(ModelStudioError):
    status = 404
    code = "model_not_found"
    type = "invalid_request_error"

    def __init__(self, model: str):
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.", param="model"
        )


class NotFound(ModelStudioError):
    """404: a stored object (a stored response) that this workspace does not have."""

    status = 404
    code = "NotFound"
    type = "invalid_request_error"


class RequestTooLarge(ModelStudioError):
    status = 413
    code = "BadRequest.TooLarge"
    type = "invalid_request_error"


class UnsupportedFileFormat(ModelStudioError):
    status = 415
    code = "BadRequest.UnsupportedFileFormat"
    type = "invalid_request_error"


class RateQuota(ModelStudioError):
    status = 429
    code = "Throttling.RateQuota"
    type = "limit_requests"


class Throttling(ModelStudioError):
    """429: the engine behind the model is throttling (an upstream's own limit)."""

    status = 429
    code = "Throttling"
    type = "throttling"


class InternalError(ModelStudioError):
    status = 500
    code = "InternalError"
    type = "internal_error"

    def __init__(self, message: str = "An internal error has occurred, please try again later.", **kw):
        super().__init__(message, **kw)


class ModelUnavailable(ModelStudioError):
    """503: the deployment behind a model is down, still loading or overloaded."""

    status = 503
    code = "ModelUnavailable"
    type = "service_unavailable_error"


class ClientClosedRequest(ModelStudioError):
    """499 (nginx's code): the client went away before its reply was complete. Never sent (nobody
    is there to read it); it names the call's end in the ledger."""

    status = 499
    code = "ClientClosedRequest"
    type = "client_closed_request"

    def __init__(self, message: str = "The client closed the connection before the reply was complete", **kw):
        super().__init__(message, **kw)
