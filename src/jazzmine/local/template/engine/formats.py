"""Format strings checked before they run: printf (``%``) and ``str.format`` fields.

A field's width or precision pads the result to that many characters
(``'{:>999999999}'.format(1)``, ``'%*d' % (10**9, 1)``), so the numbers in a format
string, and the arguments that fill them in, are checked against the caps of
``budget`` before Python builds anything. No llama.cpp counterpart: a sandbox
limit of ours.
"""

from __future__ import annotations

import re
import string
from typing import Any

from .budget import MAX_TEXT, check_text, is_int, refuse
from .shape import check_printable

# a printf field: %[(name)][flags][width][.precision][length]conversion; width and
# precision may be *, each taking the next argument before the value does
_PRINTF_FIELD = re.compile(r"%(\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.?)", re.S)
_DIGITS = re.compile(r"\d+")


def _check_number_text(digits: str) -> None:
    # a width or precision: compared as text first, int() refuses long digit strings
    if len(digits) > 9 or int(digits) > MAX_TEXT:
        raise refuse("a field padded to", int(digits[:20]), MAX_TEXT)


def _check_numbers_in(value: Any) -> None:
    if is_int(value):
        check_text(abs(value))
    elif isinstance(value, str):
        for digits in _DIGITS.findall(value):
            _check_number_text(digits)


def check_printf(fmt: str | bytes, args: Any) -> None:
    """``fmt % args``: refuse widths and precisions that pad past the caps."""
    text = fmt.decode("latin-1") if isinstance(fmt, bytes) else fmt
    values = args if isinstance(args, tuple) else (args,)
    position = 0  # the next argument a field takes
    for match in _PRINTF_FIELD.finditer(text):
        name, width, precision, conversion = match.groups()
        if conversion == "%" and not (name or width or precision):
            continue  # "%%" takes no argument
        for number in (width, precision):
            if number == "*":
                if position < len(values) and is_int(values[position]):
                    check_text(abs(values[position]))
                position += 1
            elif number:
                _check_number_text(number)
        position += name is None
    check_printable(*values)


def _format_argument(key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The argument a replacement field's name refers to, as str.format looks it up."""
    base = re.split(r"[.\[]", key, maxsplit=1)[0]
    if base.isdecimal():
        # str.format reads any Unicode decimal digits as an index, as int() does
        index = int(base) if len(base) <= 9 else len(args)
        return args[index] if index < len(args) else None
    return kwargs.get(base)


def check_format(fmt: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """``fmt.format(*args, **kwargs)``: refuse format specs that pad past the caps."""
    parse = string.Formatter().parse
    try:
        fields = [(field, list(parse(spec or ""))) for _, field, spec, _ in parse(fmt)]
    except ValueError:
        return  # a malformed format string: the call itself fails the same way
    automatic = 0  # the index "{}" stands for, numbered as str.format numbers them
    for field, inner_fields in fields:
        if field == "":
            automatic += 1
        for literal, inner, _, _ in inner_fields:
            for digits in _DIGITS.findall(literal):
                _check_number_text(digits)
            if inner is None:
                continue
            # a spec filled in from the arguments ("{:{}}"): what they hold counts too
            if inner == "":
                value = args[automatic] if automatic < len(args) else None
                automatic += 1
            else:
                value = _format_argument(inner, args, kwargs)
            _check_numbers_in(value)
    check_printable(*args, *kwargs.values())
