"""Write the multitask own-data worked example: the classic cars table as JSON lines, one car per line.

The data is `vega_datasets.local_data.cars()`, the copy bundled in the installed package (the UCI Auto MPG data of
Quinlan 1993, from StatLib; the package is BSD-3), read offline. Two targets per car: where it was made (Origin: USA,
Europe or Japan; a class) and its fuel economy (Miles_per_Gallon; a number), from cylinders, displacement, horsepower
(6 missing: JSON null), weight, acceleration and model year. The 8 cars without a miles-per-gallon value are left out
(the recipe refuses a row without a target), and so is the car's name. The recipe never uses it by default.

    python benchmarks/own_data/multitask_example.py /tmp/cars.jsonl
    cookbook run multitask --profile full --data /tmp/cars.jsonl --target Origin,Miles_per_Gallon --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from vega_datasets import local_data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the .jsonl file to write (.jsonl.gz also works)")
    args = parser.parse_args()
    cars = local_data.cars()
    cars = cars[cars["Miles_per_Gallon"].notna()].drop(columns="Name").assign(Year=cars["Year"].dt.year)
    cars.to_json(args.out, orient="records", lines=True)
    print(f"{args.out}: {len(cars)} cars, columns {', '.join(cars.columns)}")


if __name__ == "__main__":
    main()
