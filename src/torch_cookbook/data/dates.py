"""Human-written dates in many languages and formats -> ISO 8601, generated offline from CLDR via babel.

Source: `babel.dates.format_date` with the Unicode CLDR data that ships inside babel (Unicode licence,
babel is BSD-3). Each example is one calendar date written in one (locale, format) pair, e.g.
("Sonntag, 6. Januar 1985", "1985-01-06"), ("6 janv. 1985", "1985-01-06"), ("06.01.85", "1985-01-06").

Dates run from 1950-01-01 to 2049-12-31, so a two-digit year is unambiguous (50-99 -> 19xx, 00-49 -> 20xx).
The held-out set uses calendar dates that never occur in training (split by date, not by string), so a
model must generalise, not remember. en_US's numeric "short" format (M/d/yy) is left out: "1/6/85" would
mean 6 January there and 1 June in es_ES, and no model could tell which is meant.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from torch_cookbook.errors import DataError

LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_PT", "nl_NL", "sv_SE", "pl_PL", "da_DK",
           "ro_RO", "ca_ES", "id_ID", "tr_TR", "fi_FI", "cs_CZ")
FORMATS = ("full", "long", "medium", "short")
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
EXCLUDED = {("en_US", "short")}  # month-first with a two-digit year: ambiguous against d/M/yy locales


@dataclass
class DatePairs:
    """Parallel lists: source texts, ISO targets, and which locale/format wrote each source."""

    src: list[str]
    tgt: list[str]
    style: list[str]


def styles() -> list[tuple[str, str]]:
    return [(loc, fmt) for loc in LOCALES for fmt in FORMATS if (loc, fmt) not in EXCLUDED]


def render(dates: list[datetime.date], rng: random.Random) -> DatePairs:
    from babel.dates import format_date

    pairs = DatePairs([], [], [])
    table = styles()
    for d in dates:
        loc, fmt = rng.choice(table)
        pairs.src.append(format_date(d, fmt, locale=loc))
        pairs.tgt.append(d.isoformat())
        pairs.style.append(f"{loc}/{fmt}")
    return pairs


def load(n_train: int, n_test: int, seed: int = 0, test_fraction: float = 0.2) -> tuple[DatePairs, DatePairs]:
    """`n_train` training and `n_test` held-out examples; held-out dates never appear in training.

    The calendar (36,524 days) is split by `seed`: `test_fraction` of the days are held out. Each example
    then draws a date from its side of the split and a (locale, format) at random.
    """
    try:
        import babel.dates  # noqa: F401
    except ImportError:  # pragma: no cover - babel is a requirement
        raise DataError("the dates task needs the `babel` package (pip install babel)") from None
    days = [FIRST + datetime.timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    rng = random.Random(seed)
    rng.shuffle(days)
    cut = int(len(days) * test_fraction)
    test_days, train_days = days[:cut], days[cut:]
    train = render([rng.choice(train_days) for _ in range(n_train)], rng)
    test = render(test_days[:n_test] if n_test <= len(test_days) else [rng.choice(test_days) for _ in range(n_test)],
                  rng)
    return train, test
