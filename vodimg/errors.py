"""The one error type every layer above the image engine raises.

The wire layer turns an ApiError into the API 3.0 error envelope; codes are those of
``vodimg/spec/common-error-codes.json`` and ``vodimg/spec/vod-error-codes.json``.
"""


class ApiError(Exception):
    """An error the client sees as ``{"Error": {"Code": code, "Message": message}}``."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
