"""Money for invoices: Decimal euros, rounded half up to cents, formatted the German way.

VAT is computed per rate on the sum of that rate's net lines (not line by line), which is
how German invoices show it: one net amount and one VAT amount per rate (§14 Abs. 4 UStG).
Formatting is done by hand: a locale such as de_DE may be missing on the machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def to_cents(amount: Decimal | int | str) -> Decimal:
    """`amount` rounded half up to whole cents: 2.345 -> 2.35, -2.345 -> -2.35."""
    return Decimal(amount).quantize(CENT, rounding=ROUND_HALF_UP)


def line_net(quantity: Decimal, unit_net: Decimal) -> Decimal:
    """The net amount of an invoice line, in cents."""
    return to_cents(quantity * unit_net)


def format_number(value: Decimal, places: int = 2) -> str:
    """German digit grouping: 1234567.5 -> '1.234.567,50'."""
    quantum = Decimal(1).scaleb(-places)
    rounded = Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP)
    text = f"{abs(rounded):,.{places}f}"  # '1,234,567.50'
    text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return f"-{text}" if rounded < 0 else text


def format_eur(amount: Decimal) -> str:
    """'1.234,50 €' (amount rounded half up to cents)."""
    return f"{format_number(amount)} €"


def format_quantity(quantity: Decimal) -> str:
    """A quantity without needless decimals: 3 -> '3', 2.5 -> '2,5', 1250 -> '1.250'."""
    normal = quantity.normalize()
    places = max(0, -int(normal.as_tuple().exponent))
    return format_number(normal, places)


def format_rate(rate: Decimal) -> str:
    """A VAT rate in percent: 19 -> '19 %', 5.5 -> '5,5 %'."""
    return f"{format_quantity(rate)} %"


@dataclass(frozen=True, slots=True)
class VatGroup:
    """The lines of one VAT rate (percent) summed: net, VAT on that net, and gross."""

    rate: Decimal
    net: Decimal
    vat: Decimal

    @property
    def gross(self) -> Decimal:
        return self.net + self.vat


def vat_groups(lines: Iterable[tuple[Decimal, Decimal]]) -> list[VatGroup]:
    """Group (rate in percent, net) lines by rate, highest rate first.

    The net per rate is the sum of the lines' nets; its VAT is rounded half up to cents.
    """
    nets: dict[Decimal, Decimal] = {}
    for rate, net in lines:
        if rate < 0:
            raise ValueError(f"a VAT rate must not be negative, got {rate}")
        key = rate.normalize()
        nets[key] = nets.get(key, Decimal(0)) + to_cents(net)
    return [
        VatGroup(rate=rate, net=net, vat=to_cents(net * rate / HUNDRED))
        for rate, net in sorted(nets.items(), reverse=True)
    ]
