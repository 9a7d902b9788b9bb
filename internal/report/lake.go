package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pulselake/pulselake/internal/query"
)

// ErrTooManyRows is returned when a period holds more readings than a report reads
// (MaxCSVRows); a shorter period helps.
var ErrTooManyRows = errors.New("too many readings")

// Querier runs one read-only SQL query (a *query.Engine).
type Querier interface {
	Query(ctx context.Context, sql string, lim query.Limits) (*query.Result, error)
}

// heartRateSQL selects one subject's heart rate in [lo, hi) from the lake, oldest first; a
// zero bound is open.
func heartRateSQL(subject string, lo, hi time.Time) string {
	sql := "SELECT time, bpm FROM trusted.heart_rate WHERE subject = " + query.Literal(subject)
	if !lo.IsZero() {
		sql += " AND time >= " + query.TimestampLiteral(lo)
	}
	if !hi.IsZero() {
		sql += " AND time < " + query.TimestampLiteral(hi)
	}
	return sql + " ORDER BY time"
}

// LakeHeartRate reads one subject's heart rate in [lo, hi) from trusted.heart_rate (a zero
// bound is open), at most MaxCSVRows readings.
func LakeHeartRate(ctx context.Context, q Querier, subject string, lo, hi time.Time) ([]Reading, error) {
	res, err := q.Query(ctx, heartRateSQL(subject, lo, hi), query.Limits{MaxRows: MaxCSVRows, Timeout: 10 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("reading trusted.heart_rate: %w", err)
	}
	if res.Truncated {
		return nil, fmt.Errorf("%w: subject %s has more than %d heart-rate readings in that period; give --from and --to", ErrTooManyRows, subject, MaxCSVRows)
	}
	rs := make([]Reading, 0, len(res.Rows))
	for _, row := range res.Rows {
		t, ok1 := row[0].(time.Time)
		v, ok2 := row[1].(float64)
		if ok1 && ok2 {
			rs = append(rs, Reading{Time: t, BPM: v})
		}
	}
	return rs, nil
}
