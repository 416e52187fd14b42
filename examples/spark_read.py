"""Read a pluvo-warehouse snapshot with PySpark in local mode; print each table's rows and types.

    python3 examples/spark_read.py SNAPSHOT [S3_ENDPOINT]

SNAPSHOT is a snapshot folder (the local `<db name>-export/current`), or an object storage
prefix (`s3a://bucket/prefix`, or the folder of an `export --to file:///folder`), resolved
through its `current.json`. For an S3-compatible
server give its endpoint (http://127.0.0.1:9000); credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY. Needs Java 17+ and `pip install pyspark==4.3.0` (plus, for s3a, the
hadoop-aws jar that matches Spark's Hadoop in SPARK_HOME/jars or via --packages).

Prints, per table: `<table> <rows> <column>:<type> ...`, in the order of the manifest, so that
the output can be compared with `pluvo-warehouse query`.
"""

import json
import os
import sys

from pyspark.sql import SparkSession


def main():
    snapshot = sys.argv[1]
    endpoint = sys.argv[2] if len(sys.argv) > 2 else None
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("pluvo-snapshot-check")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
    )
    if endpoint:
        builder = (
            builder.config("spark.hadoop.fs.s3a.endpoint", endpoint)
            .config("spark.hadoop.fs.s3a.path.style.access", "true")
            .config("spark.hadoop.fs.s3a.connection.ssl.enabled", str(endpoint.startswith("https")).lower())
            .config("spark.hadoop.fs.s3a.access.key", os.environ.get("AWS_ACCESS_KEY_ID", ""))
            .config("spark.hadoop.fs.s3a.secret.key", os.environ.get("AWS_SECRET_ACCESS_KEY", ""))
        )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")

    if snapshot.startswith("s3a://"):
        # The pointer, written last: the manifest of the current snapshot.
        pointer = spark.read.text(snapshot.rstrip("/") + "/current.json", wholetext=True).first()[0]
        manifest = json.loads(pointer)
        base = f"{snapshot.rstrip('/')}/snapshots/{manifest['snapshot']}"
    elif os.path.exists(os.path.join(snapshot, "current.json")):
        # An object storage layout in a folder (`export --to file:///...`).
        with open(os.path.join(snapshot, "current.json")) as f:
            manifest = json.load(f)
        base = os.path.join(os.path.realpath(snapshot), "snapshots", manifest["snapshot"])
    else:
        base = os.path.realpath(snapshot)
        with open(os.path.join(base, "manifest.json")) as f:
            manifest = json.load(f)

    print(f"spark {spark.version} snapshot {manifest['snapshot']}")
    for table in manifest["tables"]:
        # Spark discovers hive partitions (`col=value/`) and types them from the values.
        frame = spark.read.parquet(f"{base}/{table['name']}")
        types = " ".join(f"{f.name}:{f.dataType.simpleString()}" for f in frame.schema.fields)
        print(f"{table['name']} {frame.count()} {types}")
    spark.stop()


if __name__ == "__main__":
    main()
