-- description: step-trainer readings joined to the phone reading taken at the same moment; no personal data
-- expect: unique(reading_time)
-- expect: not_null(reading_time, serial_number, distance_from_object, x, y, z)
-- expect: rows >= 1
SELECT
    s.reading_time,
    s.serial_number,
    s.distance_from_object,
    a.x,
    a.y,
    a.z
FROM trusted.step_trainer_trusted s
JOIN trusted.accelerometer_trusted a ON a.reading_time = s.reading_time
