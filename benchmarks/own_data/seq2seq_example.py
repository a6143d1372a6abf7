"""Write the seq2seq own-data worked example: English -> German names as a header-less source<TAB>target file.

The pairs are pycountry's German gettext catalogues (the iso-codes project, LGPL-2.1+), read offline from the
installed package the way the recipe reads the French ones for its names task: countries, former countries,
subdivisions, languages, language families, currencies and scripts. The recipe never uses them by default.

    python benchmarks/own_data/seq2seq_example.py /tmp/en_de_names.tsv [--language de]
    cookbook run seq2seq --profile full --data /tmp/en_de_names.tsv --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch_cookbook.data import names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .tsv file to write")
    parser.add_argument("--language", default="de", help="a language pycountry has catalogues for (de, it, nl, es)")
    args = parser.parse_args()
    pairs = names.catalogue_pairs(args.language)
    # a tab or a line break inside a name would break the line format (one German name ends in a tab): left out
    kept = [(s, t) for s, t in zip(pairs.src, pairs.tgt) if not any(c in s + t for c in "\t\r\n")]
    args.out.write_text("".join(f"{s}\t{t}\n" for s, t in kept), encoding="utf-8")
    changed = sum(s != t for s, t in kept)
    print(f"{args.out}: {len(kept)} English -> {args.language} pairs ({changed} differ), "
          f"{len({s for s, _ in kept})} distinct English names; {len(pairs) - len(kept)} left out")


if __name__ == "__main__":
    main()
