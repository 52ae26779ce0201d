"""Invoice pricing: fiat totals, crypto conversion and base-unit arithmetic.

Money is `Decimal` (fiat and display amounts) or `int` base units (wei, sats); floats are
refused everywhere because a binary float cannot hold 0.10 exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, InvalidOperation
from typing import Literal

from libs.common.currencies import FIAT_MINOR_UNITS
from libs.common.limits import (
    DECIMAL_MAX_INTEGER_DIGITS,
    ITEM_NAME_MAX_CHARS,
    ITEMS_MAX,
    MONEY_MAX_FRACTION_DIGITS,
    QUANTITY_MAX,
    TAX_MAX,
    TOTAL_MAX,
    UNIT_PRICE_MAX,
)

__all__ = [
    "CRYPTO",
    "FIAT_MINOR_UNITS",
    "CryptoAsset",
    "LineItem",
    "PricingError",
    "PricingErrors",
    "Totals",
    "compute_totals",
    "crypto_amount",
    "format_money",
    "from_base_units",
    "parse_decimal",
    "to_base_units",
]

# The bounds are libs/common/limits.py's (the gateway reads the same names). The digit counts
# bound magnitudes so a hostile input ("9" * 10**6, 1E+999999) cannot cost CPU or memory; the
# maxima (QUANTITY_MAX ... TOTAL_MAX) are what a merchant may actually ask for.


Network = Literal["ethereum", "bitcoin"]


@dataclass(frozen=True)
class CryptoAsset:
    symbol: str
    network: Network
    decimals: int
    # ERC-20 token contract address; None for a chain's native coin (or not configured yet).
    contract: str | None = None

    def __post_init__(self) -> None:
        # Amounts are bounded to MONEY_MAX_FRACTION_DIGITS decimals, so an asset must fit inside that.
        if not 0 <= self.decimals <= MONEY_MAX_FRACTION_DIGITS:
            raise ValueError(f"{self.symbol}: decimals must be between 0 and {MONEY_MAX_FRACTION_DIGITS}")


CRYPTO: dict[str, CryptoAsset] = {
    "ETH": CryptoAsset("ETH", "ethereum", 18, None),
    "USDC": CryptoAsset("USDC", "ethereum", 6, None),
    "BTC": CryptoAsset("BTC", "bitcoin", 8, None),
}

# Operands are bounded (DECIMAL_MAX_INTEGER_DIGITS + MONEY_MAX_FRACTION_DIGITS digits, at most ITEMS_MAX
# terms), so 200 digits is exact for every product and sum; trapping Inexact turns any
# future violation of that into an exception rather than a silently rounded amount.
_EXACT = Context(prec=200, traps=[InvalidOperation, Inexact])
# The one place rounding is intended: quantizing to a currency's minor unit.
_ROUND_HALF_UP = Context(prec=200, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
_ZERO = Decimal(0)
# Exchange rates come from providers at whatever precision they quote; they only need a bound.
_MAX_RATE_FRACTION_DIGITS = 40

_DECIMAL_RE = re.compile(r"-?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?", re.ASCII)


class PricingError(ValueError):
    """One invalid input, named by its field path (e.g. `items[1].quantity`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[PricingError], tuple[str, str]]:
        # The default reduce replays `args` (the message) into __init__, which takes two.
        return (type(self), (self.field, self.reason))


class PricingErrors(ValueError):
    """Every problem found in one request, so a client can fix them all in one round trip."""

    def __init__(self, errors: list[PricingError]) -> None:
        if not errors:
            raise ValueError("PricingErrors needs at least one error")
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)

    def __reduce__(self) -> tuple[type[PricingErrors], tuple[list[PricingError]]]:
        return (type(self), (self.errors,))


@dataclass(frozen=True)
class LineItem:
    name: str
    quantity: Decimal
    unit_price: Decimal

    def __post_init__(self) -> None:
        # Type errors are caller bugs, not user input, so they raise immediately instead of
        # being collected; range checks happen in compute_totals, where fields are named.
        if not isinstance(self.name, str):
            raise TypeError(f"LineItem.name must be str, got {type(self.name).__name__}")
        _require_decimal(self.quantity, "LineItem.quantity")
        _require_decimal(self.unit_price, "LineItem.unit_price")


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def _require_decimal(value: object, what: str) -> Decimal:
    if isinstance(value, float):
        raise TypeError(f"{what} must be a Decimal, not float (floats cannot represent money exactly)")
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, got {type(value).__name__}")
    return value


def _require_int(value: object, what: str) -> int:
    # bool is an int subclass; True wei is certainly a bug.
    if isinstance(value, float):
        raise TypeError(f"{what} must be an int, not float")
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


def _fraction_digits(value: Decimal) -> int:
    """Significant fractional digits of a finite Decimal: 1.50 has 1, 100 has 0."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # callers check is_finite() first
    if exponent >= 0:
        return 0
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -exponent - trailing_zeros)


def _magnitude_problem(value: Decimal, max_fraction_digits: int = MONEY_MAX_FRACTION_DIGITS) -> str | None:
    """Why a Decimal is unusable as an amount (non-finite, absurdly large or fine), or None."""
    if not value.is_finite():
        return "must be a finite number"
    if not value.is_zero() and value.adjusted() >= DECIMAL_MAX_INTEGER_DIGITS:
        return f"must be less than 10^{DECIMAL_MAX_INTEGER_DIGITS}"
    if _fraction_digits(value) > max_fraction_digits:
        return f"must have at most {max_fraction_digits} decimal places"
    return None


def _quantize(value: Decimal, exponent: int) -> Decimal:
    q = value.quantize(Decimal(1).scaleb(-exponent), context=_ROUND_HALF_UP)
    # -0.00 would be serialised with its sign; a zero amount has none.
    return abs(q) if q.is_zero() else q


def parse_decimal(value: str, field: str) -> Decimal:
    """Parse a plain decimal string ("12.50", "3", "-1") from an API request.

    Only `-?digits[.digits]` is accepted: no exponent, whitespace, `_`, NaN or Infinity, at most
    DECIMAL_MAX_INTEGER_DIGITS integer and MONEY_MAX_FRACTION_DIGITS fractional digits. The sign is allowed so
    that range rules ("must be > 0") can report a negative value precisely.
    """
    if isinstance(value, float):
        raise TypeError(f"{field}: pass money as a decimal string, not float")
    if not isinstance(value, str):
        raise TypeError(f"{field}: expected a decimal string, got {type(value).__name__}")
    # The length cap runs before the regex so an enormous string is refused in O(1).
    if len(value) > DECIMAL_MAX_INTEGER_DIGITS + MONEY_MAX_FRACTION_DIGITS + 2:
        raise PricingError(field, "is too long to be a valid amount")
    match = _DECIMAL_RE.fullmatch(value)
    if match is None:
        if value.strip() == "":
            raise PricingError(field, "is required")
        raise PricingError(field, f"must be a plain decimal number such as 12.50, got {value!r}")
    if len(match["int"]) > DECIMAL_MAX_INTEGER_DIGITS:
        raise PricingError(field, f"must have at most {DECIMAL_MAX_INTEGER_DIGITS} integer digits")
    if match["frac"] is not None and len(match["frac"]) > MONEY_MAX_FRACTION_DIGITS:
        raise PricingError(field, f"must have at most {MONEY_MAX_FRACTION_DIGITS} decimal places")
    return Decimal(value)


def compute_totals(items: list[LineItem], tax: Decimal, currency: str) -> Totals:
    """Subtotal, tax and total of an invoice, each in the currency's minor unit.

    The subtotal is rounded once (ROUND_HALF_UP) after summing exact line products, so
    per-line rounding cannot accumulate; total = rounded subtotal + tax, exactly.
    Raises PricingErrors listing every invalid field.
    """
    _require_decimal(tax, "tax")
    if not isinstance(currency, str):
        raise TypeError(f"currency must be str, got {type(currency).__name__}")

    errors: list[PricingError] = []
    exponent = FIAT_MINOR_UNITS.get(currency)
    if exponent is None:
        supported = ", ".join(sorted(FIAT_MINOR_UNITS))
        errors.append(PricingError("currency", f"unsupported currency {currency!r} (supported: {supported})"))

    def check_amount(
        value: Decimal, field: str, *, allow_zero: bool, in_minor_units: bool, maximum: Decimal
    ) -> None:
        problem = _magnitude_problem(value)
        if problem is None:
            if value < 0 or (value == 0 and not allow_zero):
                problem = "must be zero or greater" if allow_zero else "must be greater than 0"
            elif value > maximum:
                problem = f"must be at most {maximum}"
            elif in_minor_units and exponent is not None and _fraction_digits(value) > exponent:
                problem = f"must have at most {exponent} decimal places for {currency}"
        if problem is not None:
            errors.append(PricingError(field, problem))

    if not items:
        errors.append(PricingError("items", "at least one item is required"))
    elif len(items) > ITEMS_MAX:
        # Per-item checks are skipped: thousands of errors would help nobody.
        errors.append(PricingError("items", f"at most {ITEMS_MAX} items are allowed, got {len(items)}"))
    else:
        for i, item in enumerate(items):
            if not isinstance(item, LineItem):
                raise TypeError(f"items[{i}] must be a LineItem, got {type(item).__name__}")
            name = item.name.strip()
            if not name:
                errors.append(PricingError(f"items[{i}].name", "must not be empty"))
            elif len(item.name) > ITEM_NAME_MAX_CHARS:
                too_long = f"must be at most {ITEM_NAME_MAX_CHARS} characters"
                errors.append(PricingError(f"items[{i}].name", too_long))
            check_amount(
                item.quantity,
                f"items[{i}].quantity",
                allow_zero=False,
                in_minor_units=False,
                maximum=QUANTITY_MAX,
            )
            check_amount(
                item.unit_price,
                f"items[{i}].unit_price",
                allow_zero=True,
                in_minor_units=True,
                maximum=UNIT_PRICE_MAX,
            )
    check_amount(tax, "tax", allow_zero=True, in_minor_units=True, maximum=TAX_MAX)

    if errors:
        raise PricingErrors(errors)
    assert exponent is not None  # an unknown currency was reported above

    subtotal_exact = _ZERO
    for item in items:
        subtotal_exact = _EXACT.add(subtotal_exact, _EXACT.multiply(item.quantity, item.unit_price))
    subtotal = _quantize(subtotal_exact, exponent)
    tax_q = _quantize(tax, exponent)  # exact: tax was checked to fit the minor unit
    total = _quantize(_EXACT.add(subtotal, tax_q), exponent)
    if total <= 0:
        raise PricingErrors([PricingError("total", "must be greater than 0")])
    if total > TOTAL_MAX:
        # Every read model downstream sums totals; the bound keeps what they hold sane.
        raise PricingErrors([PricingError("total", f"must be at most {TOTAL_MAX}")])
    return Totals(subtotal=subtotal, tax=tax_q, total=total)


def crypto_amount(total_fiat: Decimal, rate: Decimal, asset: CryptoAsset) -> Decimal:
    """Crypto amount to request for `total_fiat` at `rate` (fiat per 1 unit of asset).

    Rounded up to the asset's smallest unit so the merchant never receives less than the total.
    """
    _require_decimal(total_fiat, "total_fiat")
    _require_decimal(rate, "rate")
    for value, field, fraction_digits in (
        (total_fiat, "total", MONEY_MAX_FRACTION_DIGITS),
        (rate, "rate", _MAX_RATE_FRACTION_DIGITS),
    ):
        problem = _magnitude_problem(value, fraction_digits)
        if problem is None and value <= 0:
            problem = "must be greater than 0"
        if problem is not None:
            raise PricingError(field, problem)
    # Integer ceiling division is exact; a Decimal division would round to the context precision
    # first, and rounding twice can land one base unit short.
    total_n, total_d = total_fiat.as_integer_ratio()
    rate_n, rate_d = rate.as_integer_ratio()
    scale: int = 10**asset.decimals
    numerator = total_n * rate_d * scale
    denominator = total_d * rate_n
    units = -(-numerator // denominator)
    return from_base_units(units, asset)


def to_base_units(amount: Decimal, asset: CryptoAsset) -> int:
    """Exact conversion to wei/sats/token units; refuses an amount finer than one base unit."""
    _require_decimal(amount, "amount")
    problem = _magnitude_problem(amount)
    if problem is None and amount < 0:
        problem = "must be zero or greater"
    if problem is None and _fraction_digits(amount) > asset.decimals:
        problem = f"has more than {asset.decimals} decimal places for {asset.symbol}"
    if problem is not None:
        raise PricingError("amount", problem)
    numerator, denominator = amount.as_integer_ratio()
    scale: int = 10**asset.decimals
    units, remainder = divmod(numerator * scale, denominator)
    assert remainder == 0  # guaranteed by the decimal-places check
    return units


def from_base_units(units: int, asset: CryptoAsset) -> Decimal:
    """Exact inverse of to_base_units: 1 sat == Decimal("0.00000001")."""
    _require_int(units, "units")
    if units < 0:
        raise PricingError("units", "must be zero or greater")
    # Built from a string so no context precision applies: 10^30 wei must not round.
    return Decimal(f"{units}E-{asset.decimals}")


def format_money(amount: Decimal, exponent: int) -> str:
    """Fixed-point string with exactly `exponent` decimals, for JSON ("12.50", "0.00000001").

    Raises PricingError rather than rounding when `amount` has more decimals than `exponent`:
    a formatter that silently rounds would hide an amount computed at the wrong precision.
    """
    _require_decimal(amount, "amount")
    _require_int(exponent, "exponent")
    if not 0 <= exponent <= MONEY_MAX_FRACTION_DIGITS:
        raise ValueError(f"exponent must be between 0 and {MONEY_MAX_FRACTION_DIGITS}, got {exponent}")
    problem = _magnitude_problem(amount)
    if problem is None and _fraction_digits(amount) > exponent:
        problem = f"has more than {exponent} decimal places"
    if problem is not None:
        raise PricingError("amount", problem)
    return format(_quantize(amount, exponent), "f")
