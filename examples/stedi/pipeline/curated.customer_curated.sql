-- description: consenting customers with usable accelerometer data, without personal data
-- expect: unique(subject)
-- expect: not_null(subject, serial_number)
--
-- Name, e-mail, phone and birthday stay in the trusted zone; the curated zone gets a keyed
-- pseudonym of the e-mail (stable across runs) so research can count and group customers.
SELECT
    pseudonymize(c.email)       AS subject,
    c.serial_number,
    c.registration_date,
    c.share_with_research_as_of
FROM trusted.customer_trusted c
WHERE EXISTS (SELECT 1 FROM trusted.accelerometer_trusted a WHERE a.email = c.email)
