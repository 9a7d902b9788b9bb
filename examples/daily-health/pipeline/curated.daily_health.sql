-- description: one row per subject and day - sleep, heart rate, steps and a diary column
-- expect: unique(subject, day)
-- expect: not_null(subject, day)
--
-- Days are UTC calendar days. Sleep segments (trusted.sleep, one row per stage segment with
-- its start time and duration) are grouped into sessions: a gap of more than 30 minutes
-- starts a new session. A session belongs to the day it ends; the longest session ending on
-- a day is the night's main sleep, the others are naps. Asleep minutes count every stage but
-- wake.
WITH seg AS (
    SELECT subject, "time" AS start_time, "time" + to_seconds(duration_s) AS end_time, stage, duration_s
    FROM trusted.sleep
),
marked AS (
    SELECT *,
        CASE WHEN start_time > max(end_time) OVER (
                PARTITION BY subject ORDER BY start_time, end_time
                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + INTERVAL 30 MINUTE
             THEN 1 ELSE 0 END AS new_session
    FROM seg
),
numbered AS (
    SELECT *, sum(new_session) OVER (PARTITION BY subject ORDER BY start_time, end_time ROWS UNBOUNDED PRECEDING) AS session
    FROM marked
),
sessions AS (
    SELECT subject, session,
        min(start_time) AS started,
        CAST(max(end_time) AS DATE) AS day,
        coalesce(sum(duration_s) FILTER (WHERE stage <> 'wake'), 0) / 60.0 AS asleep_minutes
    FROM numbered
    GROUP BY subject, session
),
ranked AS (
    SELECT *, row_number() OVER (PARTITION BY subject, day ORDER BY asleep_minutes DESC, started) AS rank
    FROM sessions
),
sleep_day AS (
    SELECT subject, day,
        sum(asleep_minutes) FILTER (WHERE rank = 1) AS main_sleep_minutes,
        coalesce(sum(asleep_minutes) FILTER (WHERE rank > 1), 0) AS nap_minutes,
        count(*) - 1 AS naps
    FROM ranked
    GROUP BY subject, day
),
-- Resting heart rate is the lowest mean of any clock hour of the day with at least ten
-- readings, a simple stand-in for the resting rate wearables report.
hr_hour AS (
    SELECT subject, CAST("time" AS DATE) AS day, date_trunc('hour', "time") AS hour, avg(bpm) AS bpm, count(*) AS n
    FROM trusted.heart_rate
    GROUP BY ALL
),
hr_day AS (
    SELECT h.subject, h.day,
        round(sum(h.bpm * h.n) / sum(h.n), 1) AS avg_heart_rate,
        round(min(h.bpm) FILTER (WHERE h.n >= 10), 1) AS resting_heart_rate
    FROM hr_hour h
    GROUP BY ALL
),
steps_day AS (
    SELECT subject, CAST("time" AS DATE) AS day, CAST(sum("count") AS BIGINT) AS steps
    FROM trusted.steps
    GROUP BY ALL
),
diary AS (
    SELECT subject, CAST(d."date" AS DATE) AS day, CAST(d.worked AS BOOLEAN) AS worked
    FROM landing.diary d
),
days AS (
    SELECT subject, day FROM sleep_day
    UNION SELECT subject, day FROM hr_day
    UNION SELECT subject, day FROM steps_day
    UNION SELECT subject, day FROM diary
)
SELECT
    k.subject,
    k.day,
    round(s.main_sleep_minutes, 1) AS main_sleep_minutes,
    round(s.nap_minutes, 1)        AS nap_minutes,
    s.naps,
    h.avg_heart_rate,
    h.resting_heart_rate,
    st.steps,
    d.worked
FROM days k
LEFT JOIN sleep_day s  USING (subject, day)
LEFT JOIN hr_day h     USING (subject, day)
LEFT JOIN steps_day st USING (subject, day)
LEFT JOIN diary d      USING (subject, day)
