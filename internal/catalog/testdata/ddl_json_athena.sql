-- landing.vitals: 1 rows in 1 json files (91 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE DATABASE IF NOT EXISTS `landing`;

CREATE EXTERNAL TABLE IF NOT EXISTS `landing`.`vitals` (
  `device` string,
  `bpm` bigint,
  `at` timestamp,
  `ok` boolean,
  `we_ird` bigint,
  `ctx` string -- JSON text of an object or array
)
PARTITIONED BY (
  `source` string,
  `day` date
)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES ('mapping.we_ird' = 'we"ird')
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://lake-bucket/vitals/';

-- Load the k=v partitions (run again after new partition folders appear),
-- or use partition projection instead (docs/catalog.md):
MSCK REPAIR TABLE `landing`.`vitals`;
