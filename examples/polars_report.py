"""Read the pluvo-warehouse Parquet snapshot with polars (or pandas + pyarrow).

Usage: python examples/polars_report.py [EXPORT_DIR]   (default: pluvo-export)

Reads EXPORT_DIR/current/ (the published snapshot: complete, never half-written), prints the
manifest (which sync run, when), then two answers:
  * certificates issued per year and title, reading only the CERTIFICATE partitions of
    portfolio_items (hive folders related_object_type=.../completion_year=...), and
  * completion rate per group, joining users, group_members and portfolio_items.
"""

import json
import pathlib
import sys

export = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "pluvo-export")
snapshot = (export / "current").resolve()  # pin one snapshot for the whole script
manifest = json.loads((snapshot / "manifest.json").read_text())
print(f"snapshot {manifest['snapshot']}: run {manifest['run_id']}, exported {manifest['exported_at']}")
for t in manifest["tables"]:
    print(f"  {t['name']:<24} {t['rows']:>9} rows")


def table(name):
    return str(snapshot / manifest_glob(name))


def manifest_glob(name):
    return next(t["glob"] for t in manifest["tables"] if t["name"] == name)


try:
    import polars as pl

    items = pl.scan_parquet(table("portfolio_items"), hive_partitioning=True)
    per_year = (
        items.filter(pl.col("related_object_type") == "CERTIFICATE")  # prunes to one folder
        .filter(pl.col("_deleted_at").is_null())
        .group_by("completion_year", "title")
        .agg(pl.len().alias("issued"))
        .sort("completion_year", "title")
        .collect()
    )
    print(per_year)

    members = pl.scan_parquet(table("group_members")).filter(
        (pl.col("role") == "participant") & pl.col("_deleted_at").is_null()
    )
    groups = pl.scan_parquet(table("groups")).filter(pl.col("_deleted_at").is_null())
    trainings = items.filter(
        (pl.col("related_object_type") == "TRAINING") & pl.col("_deleted_at").is_null()
    )
    rate = (
        members.join(trainings, on="user_id")
        .join(groups, left_on="group_id", right_on="id")
        .group_by("name")
        .agg(
            pl.len().alias("items"),
            ((pl.col("progress") >= 100) | pl.col("completion_date").is_not_null())
            .mean()
            .mul(100)
            .round(1)
            .alias("completion_pct"),
        )
        .sort("completion_pct", descending=True)
        .collect()
    )
    print(rate)
except ImportError:
    import pandas as pd  # needs pyarrow

    items = pd.read_parquet(
        snapshot / "portfolio_items", filters=[("related_object_type", "=", "CERTIFICATE")]
    )
    items = items[items["_deleted_at"].isna()]
    print(items.groupby(["completion_year", "title"]).size().rename("issued").to_string())
