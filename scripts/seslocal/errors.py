"""SES v2 error responses in the rest-json form that botocore parses."""

# SES v2 limit for one message "after base64 encoding", from the Amazon SES
# developer guide page "Service quotas in Amazon SES" (Message quotas table).
MAX_RAW_MESSAGE_BASE64_BYTES = 40 * 1024 * 1024


class ApiError(Exception):
    """An error response: HTTP status, error code and message.

    The handler sends the code in the x-amzn-ErrorType header and the message
    as {"message": ...}, which botocore reports as Error.Code and Error.Message.
    """

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequestException", message)


def message_rejected(message: str) -> ApiError:
    return ApiError(400, "MessageRejected", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFoundException", message)


def message_too_large(base64_length: int) -> ApiError:
    # NOTE: the code and limit follow the SES quotas page, but the wording is
    # this endpoint's own because no AWS source for the SES v2 text was found.
    return message_rejected(
        f"Message length is more than {MAX_RAW_MESSAGE_BASE64_BYTES} bytes "
        f"after base64 encoding: {base64_length} bytes."
    )
