"""Write the regression own-data worked example: the classic cars table (fuel economy of 1970-82 cars) as a CSV.

The data is `vega_datasets.local_data.cars()`, the copy bundled in the installed package (the UCI Auto MPG data of
Quinlan 1993, from StatLib; the package is BSD-3), read offline. 406 cars: name, miles per gallon, cylinders,
displacement, horsepower (6 missing, left empty), weight, acceleration, model year, origin (USA, Europe, Japan).
This writes the 398 cars that have a miles-per-gallon value (the recipe refuses a row without its target), with the
model year as a number (1970 ... 1982). The recipe never uses it by default.

    python benchmarks/own_data/regression_example.py /tmp/cars.csv
    cookbook run regression --profile full --data /tmp/cars.csv --target Miles_per_Gallon --drop Name --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from vega_datasets import local_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .csv file to write (.csv.gz also works)")
    args = parser.parse_args()
    cars = local_data.cars()
    cars = cars[cars["Miles_per_Gallon"].notna()].assign(Year=cars["Year"].dt.year)
    cars.to_csv(args.out, index=False)
    print(f"{args.out}: {len(cars)} cars, columns {', '.join(cars.columns)}")


if __name__ == "__main__":
    main()
