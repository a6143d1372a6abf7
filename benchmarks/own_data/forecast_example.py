"""Write the forecast own-data worked example: monthly Pacific sea surface temperature as a CSV of month,sst.

The series is statsmodels' `elnino` dataset (NOAA ERSST.V3B, Nino 1+2 region, 0-10°S 90-80°W, monthly means in °C,
1950-2010; public domain), read offline from the installed package. It is a table of one row per year and one
column per month; this writes it as one row per month. The recipe never uses it by default.

    python benchmarks/own_data/forecast_example.py /tmp/elnino.csv
    cookbook run forecast --profile full --data /tmp/elnino.csv --time_column month --value_column sst --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def main() -> None:
    import statsmodels.api as sm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .csv file to write")
    args = parser.parse_args()
    table = sm.datasets.elnino.load_pandas().data
    rows = [f"{int(year)}-{m + 1:02d}-01,{sst:.2f}\n"
            for year, *monthly in table[["YEAR", *MONTHS]].itertuples(index=False) for m, sst in enumerate(monthly)]
    args.out.write_text("month,sst\n" + "".join(rows), encoding="utf-8")
    print(f"{args.out}: {len(rows)} months, {rows[0].split(',')[0]} .. {rows[-1].split(',')[0]}")


if __name__ == "__main__":
    main()
