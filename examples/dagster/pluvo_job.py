"""A Dagster job for pluvo-warehouse: `sync`, then `export`, each an op that fails the run on a
non-zero exit code (the exit codes are documented: 0 ok, 1 error, 2 usage or configuration
error). A failed sync stops the job before `export`, so the previous Parquet snapshot stays
published, as it would with cron.

Settings come from the environment, as for the binary itself: PLUVO_URL, PLUVO_CLIENT_ID,
PLUVO_CLIENT_SECRET and optionally PLUVO_DB (or a pluvo-warehouse.toml in the working folder);
PLUVO_WAREHOUSE names the binary if it is not on PATH.

Load it in Dagster (`dagster dev -f examples/dagster/pluvo_job.py`: the job and a daily
schedule), or run the job once without a Dagster deployment:

    python examples/dagster/pluvo_job.py
"""

import json
import os
import subprocess
import sys

from dagster import (
    Definitions,
    Failure,
    MetadataValue,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

BIN = os.environ.get("PLUVO_WAREHOUSE", "pluvo-warehouse")


def pluvo_warehouse(context: OpExecutionContext, *args: str) -> str:
    """Run `pluvo-warehouse ARGS`; its stdout on success, a Failure naming the exit code and
    the error message otherwise. The secret is in the environment, never in the arguments."""
    command = [BIN, "--quiet", *args]
    context.log.info("running " + " ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise Failure(
            description=f"`pluvo-warehouse {' '.join(args)}` exited {done.returncode}: "
            + done.stderr.strip()[-2000:],
            metadata={"exit_code": done.returncode},
        )
    return done.stdout


@op
def sync(context: OpExecutionContext) -> dict:
    """Pluvo into the warehouse; the run summary (`sync --format json`) as the op's output."""
    summary = json.loads(pluvo_warehouse(context, "sync", "--format", "json"))
    context.add_output_metadata(
        {
            "run_id": summary.get("run_id"),
            "rows": MetadataValue.json(
                {s["stream"]: s["new"] + s["changed"] for s in summary["streams"]}
            ),
        }
    )
    return summary


@op
def export(context: OpExecutionContext, summary: dict) -> str:
    """Publish the Parquet snapshot again (a sync publishes one too; this is where a job would
    also write `export compliance` or `query --out` files for BI tools)."""
    printed = pluvo_warehouse(context, "export")
    context.add_output_metadata({"export": MetadataValue.text(printed)})
    return printed


@job
def pluvo_sync_and_export():
    export(sync())


daily = ScheduleDefinition(job=pluvo_sync_and_export, cron_schedule="15 2 * * *")

defs = Definitions(jobs=[pluvo_sync_and_export], schedules=[daily])


if __name__ == "__main__":
    result = pluvo_sync_and_export.execute_in_process(raise_on_error=False)
    for event in result.all_events:
        if event.is_failure:
            print(event.message, file=sys.stderr)
    if result.success:
        print(result.output_for_node("export"), end="")
    sys.exit(0 if result.success else 1)
