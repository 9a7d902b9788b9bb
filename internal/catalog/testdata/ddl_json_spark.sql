-- landing.vitals: 1 rows in 1 json files (91 B), crawled 2026-11-20T08:00:00Z by pulselake
CREATE DATABASE IF NOT EXISTS `landing`;

CREATE TABLE IF NOT EXISTS `landing`.`vitals` (
  `device` STRING,
  `bpm` BIGINT,
  `at` TIMESTAMP,
  `ok` BOOLEAN,
  `we"ird` BIGINT,
  `ctx` STRING, -- JSON text of an object or array
  `source` STRING,
  `day` DATE
)
USING json
PARTITIONED BY (`source`, `day`)
LOCATION 's3://lake-bucket/vitals/';

-- Discover the k=v partitions (run again after new partition folders appear):
MSCK REPAIR TABLE `landing`.`vitals`;
