-- description: customers who agreed to share their data with research, one row per customer
-- expect: unique(email)
-- expect: not_null(email, serial_number, share_with_research_as_of)
-- expect: rows >= 1
--
-- The export repeats some records; the latest record of each customer (by lastUpdateDate)
-- is the customer's current state, including consent. Customers without a research consent
-- date are dropped here and never reach any later table.
WITH latest AS (
    SELECT *
    FROM landing.customer
    QUALIFY row_number() OVER (PARTITION BY email ORDER BY lastUpdateDate DESC, serialNumber) = 1
)
SELECT
    email,
    customerName                                AS customer_name,
    phone,
    birthDay                                    AS birth_day,
    serialNumber                                AS serial_number,
    epoch_ms(registrationDate)                  AS registration_date,
    epoch_ms(lastUpdateDate)                    AS last_update_date,
    epoch_ms(shareWithResearchAsOfDate)         AS share_with_research_as_of,
    epoch_ms(shareWithPublicAsOfDate)           AS share_with_public_as_of,
    epoch_ms(shareWithFriendsAsOfDate)          AS share_with_friends_as_of
FROM latest
WHERE shareWithResearchAsOfDate IS NOT NULL
