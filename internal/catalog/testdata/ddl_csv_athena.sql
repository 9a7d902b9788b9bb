-- landing.vitals: 1 rows in 1 csv files (75 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE DATABASE IF NOT EXISTS `landing`;

CREATE EXTERNAL TABLE IF NOT EXISTS `landing`.`vitals` (
  `device` string,
  `systolic` bigint,
  `weight` double,
  `at` string, -- timestamp text: from_iso8601_timestamp(col) or CAST(col AS timestamp)
  `on` date
)
PARTITIONED BY (
  `source` string,
  `day` date
)
ROW FORMAT DELIMITED FIELDS TERMINATED BY ','
STORED AS TEXTFILE
LOCATION 's3://lake-bucket/vitals/'
TBLPROPERTIES ('skip.header.line.count' = '1');
-- CSV columns are read by position: every file needs the header order above.

-- Load the k=v partitions (run again after new partition folders appear),
-- or use partition projection instead (docs/catalog.md):
MSCK REPAIR TABLE `landing`.`vitals`;
