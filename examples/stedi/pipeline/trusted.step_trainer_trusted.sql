-- description: step-trainer readings of devices whose serial number belongs to a curated customer
-- expect: unique(serial_number, reading_time)
-- expect: not_null(serial_number, reading_time, distance_from_object)
--
-- Because of the fulfilment defect many customers share a serial number, so this keeps
-- readings of any device a curated customer has; the machine-learning table below keeps
-- only readings matched to a consenting customer's phone at the same moment.
SELECT DISTINCT
    s.serialNumber                      AS serial_number,
    epoch_ms(s.sensorReadingTime)       AS reading_time,
    s.distanceFromObject                AS distance_from_object
FROM landing.step_trainer s
WHERE s.serialNumber IN (SELECT serial_number FROM curated.customer_curated)
