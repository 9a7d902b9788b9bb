package yamlconf

import (
	"strings"
	"testing"
	"time"
)

type inner struct {
	Max   int      `yaml:"max"`
	Wait  Duration `yaml:"wait"`
	Names []string `yaml:"names"`
	// Every is a time.Duration, whose decoding errors say not where they are.
	Every time.Duration `yaml:"every"`
}

type doc struct {
	Name  string  `yaml:"name"`
	Inner inner   `yaml:"inner"`
	Items []inner `yaml:"items"`
	Flag  bool    `yaml:"flag"`
}

func TestDecodeListsEveryMistake(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Problem // File is always "f.yaml"
	}{
		{"none", "name: x\ninner:\n  max: 3\n  wait: 2s\n", nil},
		{"unknown key", "name: x\ninner:\n  maxx: 3\n", []Problem{{Line: 3, Path: "inner.maxx"}}},
		{"wrong type", "inner:\n  max: many\n", []Problem{{Line: 2, Path: "inner.max"}}},
		{"bad duration", "inner:\n  wait: 5 seconds\n", []Problem{{Line: 2, Path: "inner.wait"}}},
		{"duration not a string", "inner:\n  wait: [1]\n", []Problem{{Line: 2, Path: "inner.wait"}}},
		{"time.Duration", "name: x\ninner:\n  max: 1\n  every: 5 seconds\n", []Problem{{Line: 4, Path: "inner.every"}}},
		{"time.Duration in a list", "items:\n  - every: 1s\n  - every: 2 s\n  - max: x\n", []Problem{
			{Line: 3, Path: "items[1].every"}, {Line: 4, Path: "items[2].max"}}},
		{"same time.Duration mistake twice", "inner:\n  every: soon\nitems:\n  - every: soon\n", []Problem{
			{Line: 2, Path: "inner.every"}, {Line: 4, Path: "items[0].every"}}},
		{"section of wrong type", "inner: 5\nflag: yes please\n", []Problem{{Line: 1, Path: "inner"}, {Line: 2, Path: "flag"}}},
		{"in a list", "items:\n  - max: 1\n  - max: two\n    wait: soon\n  - bogus: 1\n", []Problem{
			{Line: 3, Path: "items[1].max"}, {Line: 4, Path: "items[1].wait"}, {Line: 5, Path: "items[2].bogus"}}},
		{"all at once", "name: x\nzzz: 1\ninner:\n  max: many\n  wait: 5 seconds\n  names: {a: b}\n", []Problem{
			{Line: 2, Path: "zzz"}, {Line: 4, Path: "inner.max"}, {Line: 5, Path: "inner.wait"}, {Line: 6, Path: "inner.names"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("f.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, ps := Decode("f.yaml", f, func() *doc { return &doc{} })
			ps.Sort()
			if len(ps) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(ps), len(tt.want), ps)
			}
			for i, p := range ps {
				w := tt.want[i]
				if p.File != "f.yaml" || p.Line != w.Line || p.Path != w.Path || p.Msg == "" {
					t.Errorf("problem %d = %+v, want line %d path %s", i, p, w.Line, w.Path)
				}
			}
		})
	}
}

func TestDecodeMessages(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"zzz: 1\n", `unknown field "zzz"`},
		{"inner:\n  max: many\n", `want a whole number, got "many"`},
		{"inner:\n  max: [1]\n", `want a whole number, got a list`},
		{"inner:\n  names: {a: b}\n", `mapping was used where sequence is expected`},
		{"flag: maybe\n", `want true or false, got "maybe"`},
		{"inner:\n  wait: 5 seconds\n", `want a duration like 30s, 5m or 30d (units ms, s, m, h, d), got "5 seconds"`},
	}
	for _, tt := range tests {
		f, err := Parse("f.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		_, ps := Decode("f.yaml", f, func() *doc { return &doc{} })
		if len(ps) != 1 || !strings.HasPrefix(ps[0].Msg, tt.want) {
			t.Errorf("%q: got %v, want a message starting %q", tt.yaml, ps, tt.want)
		}
	}
}

func TestDecodeKeepsTheRest(t *testing.T) {
	f, err := Parse("f.yaml", []byte("name: x\ninner:\n  max: 7\n  wait: later\n  bogus: 1\nflag: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	d, ps := Decode("f.yaml", f, func() *doc { return &doc{Inner: inner{Wait: Duration(time.Second)}} })
	if len(ps) != 2 {
		t.Fatalf("problems: %v", ps)
	}
	if d.Name != "x" || d.Inner.Max != 7 || d.Inner.Wait.D() != time.Second || !d.Flag {
		t.Errorf("decoded %+v", d)
	}
}

func TestSyntaxErrorHasLine(t *testing.T) {
	_, err := Parse("f.yaml", []byte("a: 1\nb: [1, 2\nc: 3\n"))
	ps, ok := err.(Problems)
	if !ok || len(ps) != 1 || ps[0].Line == 0 || ps[0].File != "f.yaml" {
		t.Fatalf("err = %#v", err)
	}
}
