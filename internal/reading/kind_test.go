package reading

import (
	"regexp"
	"testing"
)

// identPattern is the documented character set of subjects and devices.
var identPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+\-]*$`)

func FuzzValidIdent(f *testing.F) {
	for _, s := range []string{"", "a", "p-1", "-a", ".", "dev:01@x+y_z.v", "a b", "ä", "a\x00", "A9", "_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validIdent(s), identPattern.MatchString(s); got != want {
			t.Fatalf("validIdent(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}
