"""The one error type every layer above the image engine raises.

The wire layer turns an ApiError into the API 3.0 error envelope; codes are those of
``vodimg/spec/common-error-codes.json`` and ``vodimg/spec/vod-error-codes.json``.
"""

from vodimg.spec import vod_actions


class ApiError(Exception):
    """An error the client sees as ``{"Error": {"Code": code, "Message": message}}``."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid_action(action: str) -> ApiError:
    """The InvalidAction error for an action this service does not implement: a real VOD action
    is named as not supported here, any other name as not existing."""
    if action in vod_actions():
        return ApiError("InvalidAction", f"The action {action!r} is a VOD action that this service "
                                         "does not support.")
    return ApiError("InvalidAction", f"The action {action!r} does not exist.")
