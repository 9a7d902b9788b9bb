-- landing.vitals: 1 rows in 1 csv files (75 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE DATABASE IF NOT EXISTS `landing`;

CREATE TABLE IF NOT EXISTS `landing`.`vitals` (
  `device` STRING,
  `systolic` BIGINT,
  `weight` DOUBLE,
  `at` TIMESTAMP,
  `on` DATE,
  `source` STRING,
  `day` DATE
)
USING csv
OPTIONS (header 'true')
PARTITIONED BY (`source`, `day`)
LOCATION 's3://lake-bucket/vitals/';
-- CSV columns are matched by position: every file needs the header order above.

-- Discover the k=v partitions (run again after new partition folders appear):
MSCK REPAIR TABLE `landing`.`vitals`;
