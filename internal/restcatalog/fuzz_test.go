package restcatalog

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeRequests feeds arbitrary bodies to every request decoder: none may panic, and every
// refusal must be a client error (4xx, or 501 for what is not offered) — never a 500.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{
		`{"namespace":["a","b"],"properties":{"k":"v"}}`,
		`{"removals":["a"],"updates":{"b":"c"}}`,
		createBody,
		`{"name":"t","stage-create":true,"schema":{"type":"struct","fields":[]},"partition-spec":{"spec-id":0,"fields":[]},"write-order":{"order-id":0,"fields":[]}}`,
		`{"identifier":{"namespace":["ns"],"name":"t"},"requirements":[{"type":"assert-create"},{"type":"assert-ref-snapshot-id","ref":"main","snapshot-id":null}],"updates":[{"action":"set-properties","updates":{"a":"b"}},{"action":"remove-properties","removals":["x"]}]}`,
		`{"requirements":[{"type":"assert-table-uuid","uuid":"9c12d441-03fe-4693-9a96-a0705ddf69c1"}],"updates":[{"action":"add-snapshot","snapshot":{"snapshot-id":1,"timestamp-ms":1,"manifest-list":"x","summary":{"operation":"append"}}}]}`,
		`{"source":{"namespace":["a"],"name":"t"},"destination":{"namespace":["b"],"name":"u"}}`,
		`{"name":"t","metadata-location":"file:///w/t/metadata/00001.metadata.json","overwrite":false}`,
		`[]`, `null`, `{"namespace":null}`, `{"updates":[null]}`, `{"requirements":[{}]}`, "\x00",
	} {
		f.Add([]byte(s))
	}
	decoders := map[string]func([]byte) error{
		"create-namespace": func(b []byte) error { _, err := decodeCreateNamespace(b); return err },
		"update-namespace": func(b []byte) error { _, err := decodeUpdateNamespaceProperties(b); return err },
		"create-table":     func(b []byte) error { _, err := decodeCreateTable(b); return err },
		"commit-table":     func(b []byte) error { _, err := decodeCommitTable(b); return err },
		"rename-table":     func(b []byte) error { _, err := decodeRenameTable(b); return err },
		"register-table":   func(b []byte) error { _, err := decodeRegisterTable(b); return err },
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, decode := range decoders {
			err := decode(data)
			if err == nil {
				continue
			}
			if code, _ := statusOf(err); code >= 500 && code != http.StatusNotImplemented {
				t.Errorf("%s: %q answers %d: %v", name, data, code, err)
			}
		}
	})
}

// FuzzParseNamespace checks the path decoding of namespaces: an accepted segment splits into
// non-empty levels that join back to it.
func FuzzParseNamespace(f *testing.F) {
	for _, s := range []string{"a", "a\x1fb", "\x1f", "a\x1f", "", "a/b", "x\x1f\x1fy"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		levels, err := parseNamespace(seg)
		if err != nil {
			if code, _ := statusOf(err); code != http.StatusBadRequest {
				t.Errorf("%q: status %d", seg, code)
			}
			return
		}
		for _, l := range levels {
			if l == "" {
				t.Fatalf("%q: empty level in %q", seg, levels)
			}
		}
		if strings.Join(levels, unitSeparator) != seg {
			t.Errorf("%q: levels %q do not join back", seg, levels)
		}
	})
}
