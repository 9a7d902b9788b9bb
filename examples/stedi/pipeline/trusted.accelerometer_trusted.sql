-- description: phone accelerometer readings of consenting customers, recorded after they consented
-- expect: unique(email, reading_time)
-- expect: not_null(email, reading_time, x, y, z)
--
-- The consent idiom: a reading may be used if its owner's consent date is set and not later
-- than the reading. Re-sent readings (same user and time) are kept once.
SELECT DISTINCT
    a."user"                    AS email,
    epoch_ms(a."timestamp")     AS reading_time,
    a.x,
    a.y,
    a.z
FROM landing.accelerometer a
JOIN trusted.customer_trusted c ON c.email = a."user"
WHERE c.share_with_research_as_of IS NOT NULL
  AND c.share_with_research_as_of <= epoch_ms(a."timestamp")
