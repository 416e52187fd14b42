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


def report_polars(pl):
    pl.Config.set_tbl_rows(-1)  # a report shows every row
    items = pl.scan_parquet(table("portfolio_items"), hive_partitioning=True)
    per_year = (
        items.filter(pl.col("related_object_type") == "CERTIFICATE")  # prunes to one folder
        .filter(pl.col("_deleted_at").is_null())
        .group_by("completion_year", "title")
        .agg(pl.len().alias("issued"))
        .sort("completion_year", "title")
        .collect()
    )
    print("certificates issued per year and title")
    print(per_year)

    # Every table carries _hash and the _*_at columns: select what each join needs, or the
    # joined frame would hold two of each.
    members = (
        pl.scan_parquet(table("group_members"))
        .filter((pl.col("role") == "participant") & pl.col("_deleted_at").is_null())
        .select("group_id", "user_id")
    )
    groups = (
        pl.scan_parquet(table("groups"))
        .filter(pl.col("_deleted_at").is_null())
        .select(pl.col("id").alias("group_id"), "name")
    )
    trainings = items.filter(
        (pl.col("related_object_type") == "TRAINING") & pl.col("_deleted_at").is_null()
    ).select("user_id", "progress", "completion_date")
    rate = (
        members.join(trainings, on="user_id")
        .join(groups, on="group_id")
        .group_by("name")
        .agg(
            pl.len().alias("items"),
            ((pl.col("progress") >= 100) | pl.col("completion_date").is_not_null())
            .mean()
            .mul(100)
            .round(1)
            .alias("completion_pct"),
        )
        .sort("completion_pct", "name", descending=[True, False])
        .collect()
    )
    print("completion per group")
    print(rate)


def report_pandas(pd):  # needs pyarrow
    import pyarrow.dataset as ds

    # Partition columns as plain values (pandas' own reader makes them dictionaries, which
    # fail on the null partition `completion_year=__HIVE_DEFAULT_PARTITION__`).
    items = (
        ds.dataset(snapshot / "portfolio_items", format="parquet", partitioning="hive")
        .to_table()
        .to_pandas()
    )
    items = items[items["_deleted_at"].isna()]
    certificates = items[items["related_object_type"] == "CERTIFICATE"]
    print("certificates issued per year and title")
    print(certificates.groupby(["completion_year", "title"]).size().rename("issued").to_string())

    members = pd.read_parquet(snapshot / "group_members")
    members = members[(members["role"] == "participant") & members["_deleted_at"].isna()]
    groups = pd.read_parquet(snapshot / "groups")
    groups = groups[groups["_deleted_at"].isna()][["id", "name"]]
    trainings = items[items["related_object_type"] == "TRAINING"]
    joined = (
        members[["group_id", "user_id"]]
        .merge(trainings[["user_id", "progress", "completion_date"]], on="user_id")
        .merge(groups.rename(columns={"id": "group_id"}), on="group_id")
    )
    joined["done"] = (joined["progress"] >= 100) | joined["completion_date"].notna()
    rate = joined.groupby("name").agg(items=("done", "size"), completion_pct=("done", "mean"))
    rate["completion_pct"] = (rate["completion_pct"] * 100).round(1)
    print("completion per group")
    print(rate.sort_values(["completion_pct"], ascending=False).to_string())


try:
    import polars
except ImportError:
    import pandas

    report_pandas(pandas)
else:
    report_polars(polars)
