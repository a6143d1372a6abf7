"""English -> French names: real human translations from the gettext catalogues shipped with `pycountry`.

Source: the iso-codes project's French `.mo` catalogues inside the `pycountry` package (LGPL-2.1+), seven
domains: countries (iso3166-1), former countries (iso3166-3), subdivisions (iso3166-2), languages
(iso639-3), language families (iso639-5), currencies (iso4217) and scripts (iso15924). Every translated
entry is one pair: 13,976 pairs, of which 5,208 differ between English and French, e.g.
"Abkhazian" -> "abkhaze", "Germany" -> "Allemagne", "North Gaza" -> "Gaza du Nord". Most names are not
translated at all (a Swedish commune keeps its name), which is why a copy-the-input baseline scores
well on all pairs and badly on the changed ones.

The split is by English string (114 English names occur in more than one domain; all their pairs land
on the same side), fixed by `seed`; `split` also carves a validation split out of the training side.
`catalogue_pairs(language)` reads another language's catalogues the same way (e.g. "de": English -> German).
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from dataclasses import dataclass

from torch_cookbook.data.userdata import split_by_source
from torch_cookbook.errors import DataError

DOMAINS = ("iso3166-1", "iso3166-3", "iso3166-2", "iso639-3", "iso639-5", "iso4217", "iso15924")
EXPECTED_PAIRS = 13976


@dataclass
class NamePairs:
    src: list[str]
    tgt: list[str]
    domain: list[str]

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, keep: list[int]) -> NamePairs:
        return NamePairs([self.src[i] for i in keep], [self.tgt[i] for i in keep], [self.domain[i] for i in keep])

    def first(self, n: int) -> NamePairs:
        """The first `n` pairs (all of them when `n` is 0)."""
        return self.subset(list(range(min(n, len(self))))) if n else self


def locales_dir() -> str:
    try:
        import pycountry
    except ImportError:  # pragma: no cover - pycountry is a requirement
        raise DataError("the names task needs the `pycountry` package (pip install pycountry)") from None
    return pycountry.LOCALES_DIR


def all_pairs() -> NamePairs:
    """Every (English, French) pair of the seven catalogues, NFC-normalised, in catalogue order."""
    pairs = catalogue_pairs("fr")
    if len(pairs) < EXPECTED_PAIRS * 0.9:  # a newer pycountry may add a few; far fewer means a broken install
        raise DataError(f"pycountry's French catalogues hold {len(pairs)} pairs, expected about {EXPECTED_PAIRS}")
    return pairs


def catalogue_pairs(language: str) -> NamePairs:
    """Every (English, `language`) pair of the seven domains' catalogues that pycountry ships for that language
    (a domain without a catalogue for it is skipped), NFC-normalised, in catalogue order."""
    from babel.messages.mofile import read_mo

    pairs = NamePairs([], [], [])
    for domain in DOMAINS:
        path = os.path.join(locales_dir(), language, "LC_MESSAGES", f"{domain}.mo")
        if not os.path.exists(path):  # not every language has every domain (all_pairs checks French)
            continue
        try:
            with open(path, "rb") as f:
                catalog = read_mo(f)
        except (OSError, ValueError) as e:
            raise DataError(f"pycountry's catalogue {path} is missing or unreadable ({e})") from None
        for message in catalog:
            if message.id and isinstance(message.id, str) and message.string:
                pairs.src.append(unicodedata.normalize("NFC", message.id))
                pairs.tgt.append(unicodedata.normalize("NFC", message.string))
                pairs.domain.append(domain)
    return pairs


def load(seed: int = 0, test_fraction: float = 0.1, max_len: int = 64) -> tuple[NamePairs, NamePairs]:
    """(train, held-out) split by English string; pairs longer than `max_len` characters on either side
    (a handful of long official names) are dropped from both."""
    train, _, test = split(seed, test_fraction, 0.0, max_len)
    return train, test


def split(seed: int = 0, test_fraction: float = 0.1, val_fraction: float = 0.0,
          max_len: int = 64) -> tuple[NamePairs, NamePairs, NamePairs]:
    """(train, validation, held-out) split by English string, fixed by `seed`.

    One shuffle of the English names: the first `test_fraction` are held out, the next `val_fraction`
    are the validation split, the rest train. So the held-out pairs are the same whatever `val_fraction`
    is, and the validation pairs come only from what would otherwise be training pairs.
    """
    pairs = all_pairs()
    keep = [i for i in range(len(pairs)) if len(pairs.src[i]) <= max_len and len(pairs.tgt[i]) <= max_len]
    pairs = pairs.subset(keep)
    train, val, held_out = split_by_source(pairs.src, seed, test_fraction, val_fraction)
    return pairs.subset(train), pairs.subset(val), pairs.subset(held_out)


def digest(pairs: NamePairs) -> str:
    """SHA-256 of the pairs, for recording which catalogue version a run used."""
    h = hashlib.sha256()
    for s, t in zip(pairs.src, pairs.tgt):
        h.update(f"{s}\t{t}\n".encode())
    return h.hexdigest()[:16]
