package query

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats of Write.
const (
	FormatTable = "table"
	FormatCSV   = "csv"
	FormatJSON  = "json"
)

// Write prints res in a format: table (aligned columns), csv (with a header) or json (one
// object with columns, rows and truncated, like POST /v1/query).
func Write(w io.Writer, format string, res *Result) error {
	switch format {
	case FormatCSV:
		cw := csv.NewWriter(w)
		cw.Write(res.Columns)
		for _, row := range res.Rows {
			rec := make([]string, len(row))
			for i, v := range row {
				rec[i] = Text(v)
			}
			cw.Write(rec)
		}
		cw.Flush()
		return cw.Error()
	case FormatJSON:
		enc := json.NewEncoder(w)
		return enc.Encode(JSONResult(res))
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(res.Columns, "\t"))
		for _, row := range res.Rows {
			cells := make([]string, len(row))
			for i, v := range row {
				cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(Text(v))
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if res.Truncated {
			_, err := fmt.Fprintf(w, "(%d rows shown; more were cut by the row limit)\n", len(res.Rows))
			return err
		}
		return nil
	}
	return fmt.Errorf("unknown format %q; use table, csv or json", format)
}

// Text renders one value for table and CSV output.
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return fmt.Sprintf("%x", x)
	case time.Time:
		return x.UTC().Format("2006-01-02T15:04:05.999999Z07:00")
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case *big.Int:
		return x.String()
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = Text(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// JSONResult converts values JSON cannot carry as they are (big integers beyond 2^53 stay
// numbers; NaN and infinities become null; byte strings hex).
func JSONResult(res *Result) *Result {
	out := *res
	out.Rows = make([][]any, len(res.Rows))
	for i, row := range res.Rows {
		r := make([]any, len(row))
		for j, v := range row {
			r[j] = jsonValue(v)
		}
		out.Rows[i] = r
	}
	return &out
}

func jsonValue(v any) any {
	switch x := v.(type) {
	case float64:
		if x != x || x > 1.7976931348623157e308 || x < -1.7976931348623157e308 {
			return nil
		}
	case []byte:
		return fmt.Sprintf("%x", x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case *big.Int:
		return json.Number(x.String())
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonValue(e)
		}
		return out
	case fmt.Stringer:
		if _, ok := v.(json.Marshaler); !ok {
			return x.String()
		}
	}
	return v
}
