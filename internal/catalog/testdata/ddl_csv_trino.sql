-- landing.vitals: 1 rows in 1 csv files (75 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE SCHEMA IF NOT EXISTS "hive"."landing";

-- Trino reads CSV tables as varchar only; the view below converts the types.
CREATE TABLE IF NOT EXISTS "hive"."landing"."vitals_csv" (
  "device" varchar,
  "systolic" varchar,
  "weight" varchar,
  "at" varchar,
  "on" varchar,
  "source" varchar,
  "day" varchar
)
WITH (
  external_location = 's3://lake-bucket/vitals/',
  format = 'CSV',
  skip_header_line_count = 1,
  partitioned_by = ARRAY['source', 'day']
);

-- Register the k=v partitions (run again after new partition folders appear):
CALL "hive".system.sync_partition_metadata(schema_name => 'landing', table_name => 'vitals_csv', mode => 'ADD');

CREATE OR REPLACE VIEW "hive"."landing"."vitals" AS
SELECT
  "device" AS "device",
  TRY_CAST("systolic" AS bigint) AS "systolic",
  TRY_CAST("weight" AS double) AS "weight",
  COALESCE(TRY_CAST("at" AS timestamp(3)), TRY(CAST(from_iso8601_timestamp("at") AS timestamp(3)))) AS "at",
  TRY_CAST("on" AS date) AS "on",
  "source" AS "source",
  TRY_CAST("day" AS date) AS "day"
FROM "hive"."landing"."vitals_csv";
