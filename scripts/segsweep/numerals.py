"""How numbers and counts are written in the thesis: three decimals, a dash for undefined
values, p-values below 0.001 as "< 0.001", plurals that agree with their count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NA = "–"


def number(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; undefined values as a dash."""
    if value is None or pd.isna(value):
        return NA
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def percent(share: float) -> str:
    """A share in [0, 1] as a whole percentage, with one decimal where rounding would show a
    share that is neither none nor all as 0 % or 100 % (0.996 → "99.6 %")."""
    text = f"{100 * share:.0f} %"
    if 0 < share < 1 and text in {"0 %", "100 %"}:
        text = f"{100 * share:.1f} %"
    return text


def integer(value: Any) -> str:
    return NA if value is None or pd.isna(value) else str(int(value))


def p_value(value: Any) -> str:
    if value is None or pd.isna(value):
        return NA
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def ci_text(low: Any, high: Any) -> str:
    """A confidence interval as "[low, high]"; a dash when undefined."""
    return NA if pd.isna(low) or pd.isna(high) else f"[{number(low)}, {number(high)}]"


def sentence_case(text: str) -> str:
    """First letter upper case, the rest untouched ("Dice" stays "Dice")."""
    return text[:1].upper() + text[1:]


def plural(n: int, word: str, words: str | None = None) -> str:
    """ "1 run", "2 runs" (or the given plural)."""
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


def verb(n: int, singular: str, plural_form: str) -> str:
    """The verb form that agrees with `n` things ("shows" / "show")."""
    return singular if n == 1 else plural_form


def significant(value: Any, digits: int = 3) -> str:
    """A positive quantity of any size (hours of a tiny or a large sweep) to `digits`
    significant digits, never in exponent notation; whole numbers from 10^digits on with
    thousands separators; undefined values as a dash."""
    if value is None or pd.isna(value):
        return NA
    if abs(float(value)) >= 10**digits:
        return f"{float(value):,.0f}"
    return np.format_float_positional(
        float(value), precision=digits, unique=False, fractional=False, trim="-"
    )
