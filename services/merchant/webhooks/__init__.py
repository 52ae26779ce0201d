"""Building blocks for webhook delivery: payload signing and SSRF-safe target URLs."""

from services.merchant.webhooks.signing import SignatureError, new_secret, sign, sign_all, verify
from services.merchant.webhooks.ssrf import (
    UnsafeUrl,
    UrlPolicy,
    check_redirect,
    resolve_and_check,
    validate_url,
)

__all__ = [
    "SignatureError",
    "UnsafeUrl",
    "UrlPolicy",
    "check_redirect",
    "new_secret",
    "resolve_and_check",
    "sign",
    "sign_all",
    "validate_url",
    "verify",
]
