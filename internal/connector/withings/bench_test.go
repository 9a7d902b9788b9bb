package withings

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkGetmeasPage measures decoding and mapping a Getmeas page of 1,000 blood-pressure
// groups.
func BenchmarkGetmeasPage(b *testing.B) {
	var groups []string
	for i := range 1000 {
		groups = append(groups, fmt.Sprintf(`{"grpid":%d,"attrib":0,"date":%d,"created":%d,"modified":%d,"category":1,"deviceid":"c405eb8e0e053f66","hash_deviceid":"c405eb8e0e053f66","measures":[{"value":%d,"type":9,"unit":0,"algo":0,"fm":3},{"value":%d,"type":10,"unit":0,"algo":0,"fm":3},{"value":70,"type":11,"unit":0,"algo":0,"fm":3}],"modelid":44,"model":"BPM Core","comment":null}`,
			4716596696+i, 1790000000+60*i, 1790000100+60*i, 1790000100+60*i, 70+i%20, 110+i%30))
	}
	page := []byte(`{"status":0,"body":{"updatetime":1790100000,"timezone":"Europe/Paris","measuregrps":[` + strings.Join(groups, ",") + `],"more":0,"offset":0}}`)
	start, end := time.Unix(1780000000, 0), time.Unix(1800000000, 0)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		g, err := decodeGetmeas(page)
		if err != nil {
			b.Fatal(err)
		}
		rs, _ := mapGroups("patient-1", g.MeasureGroups, start, end)
		for i := range rs {
			_ = json.RawMessage(rs[i].AppendJSON(nil))
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "groups/s")
}
