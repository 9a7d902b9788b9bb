-- landing.vitals: 1 rows in 1 json files (91 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE SCHEMA IF NOT EXISTS "hive"."landing";

CREATE TABLE IF NOT EXISTS "hive"."landing"."vitals" (
  "device" varchar,
  "bpm" bigint,
  "at" timestamp(3),
  "ok" boolean,
  "we""ird" bigint,
  "ctx" varchar, -- JSON text of an object or array
  "source" varchar,
  "day" date
)
WITH (
  external_location = 's3://lake-bucket/vitals/',
  format = 'JSON',
  partitioned_by = ARRAY['source', 'day']
);

-- Register the k=v partitions (run again after new partition folders appear):
CALL "hive".system.sync_partition_metadata(schema_name => 'landing', table_name => 'vitals', mode => 'ADD');
