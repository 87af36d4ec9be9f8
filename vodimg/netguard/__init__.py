"""The URL guard (DESIGN.md section 9) for every URL the service fetches or calls for a user:
ProcessImageAsync ``Url``, PullUpload ``MediaUrl`` and PUSH ``NotificationUrl``.

Only http and https; every address connected to (after DNS, on every connection, after every
redirect) is checked against the refused ranges (loopback, private, link-local, CGNAT, multicast,
reserved, cloud metadata and their IPv6 forms) unless the operator allows it with
``VODIMG_URL_ALLOW``; connect time, total time, redirects and size are bounded. See
docs/url-guard.md.
"""

from .client import USER_AGENT, check_url, fetch, post_json, post_json_async
from .policy import FetchFailed, UrlPolicy, UrlRefused

__all__ = ["FetchFailed", "USER_AGENT", "UrlPolicy", "UrlRefused", "check_url", "fetch",
           "post_json", "post_json_async"]
