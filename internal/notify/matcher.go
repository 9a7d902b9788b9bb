package notify

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Matcher matches one label: name=value, name!=value, name=~regex or name!~regex (anchored,
// as in Alertmanager). A missing label matches as the empty string.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
	re      *regexp.Regexp
}

// ParseMatcher parses name=value, name!=value, name=~re or name!~re. Values may be quoted.
func ParseMatcher(s string) (Matcher, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "=!")
	if i <= 0 {
		return Matcher{}, fmt.Errorf("matcher %q: want name=value, name!=value, name=~regex or name!~regex", s)
	}
	m := Matcher{Name: strings.TrimSpace(s[:i]), IsEqual: true}
	op := s[i:]
	switch {
	case strings.HasPrefix(op, "=~"):
		m.IsRegex, op = true, op[2:]
	case strings.HasPrefix(op, "!~"):
		m.IsRegex, m.IsEqual, op = true, false, op[2:]
	case strings.HasPrefix(op, "!="):
		m.IsEqual, op = false, op[2:]
	case strings.HasPrefix(op, "="):
		op = op[1:]
	default:
		return Matcher{}, fmt.Errorf("matcher %q: want name=value, name!=value, name=~regex or name!~regex", s)
	}
	v := strings.TrimSpace(op)
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		v = v[1 : len(v)-1]
	}
	m.Value = v
	if err := m.compile(); err != nil {
		return Matcher{}, err
	}
	return m, nil
}

func (m *Matcher) compile() error {
	if !labelNameRe.MatchString(m.Name) {
		return fmt.Errorf("matcher label name %q: want letters, digits and underscores", m.Name)
	}
	if m.IsRegex {
		re, err := regexp.Compile("^(?:" + m.Value + ")$")
		if err != nil {
			return fmt.Errorf("matcher %s: %w", m.Name, err)
		}
		m.re = re
	}
	return nil
}

var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Matches reports whether the labels satisfy the matcher.
func (m *Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	var ok bool
	if m.re != nil {
		ok = m.re.MatchString(v)
	} else {
		ok = v == m.Value
	}
	return ok == m.IsEqual
}

func (m Matcher) String() string {
	op := "="
	switch {
	case m.IsRegex && m.IsEqual:
		op = "=~"
	case m.IsRegex:
		op = "!~"
	case !m.IsEqual:
		op = "!="
	}
	return m.Name + op + fmt.Sprintf("%q", m.Value)
}

// UnmarshalJSON accepts the Alertmanager object form and compiles a regex.
func (m *Matcher) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		p, err := ParseMatcher(s)
		if err != nil {
			return err
		}
		*m = p
		return nil
	}
	type plain Matcher
	p := plain{IsEqual: true}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*m = Matcher(p)
	return m.compile()
}

// Matchers all have to match.
type Matchers []Matcher

// Matches reports whether every matcher matches.
func (ms Matchers) Matches(labels map[string]string) bool {
	for i := range ms {
		if !ms[i].Matches(labels) {
			return false
		}
	}
	return true
}

func parseMatchers(ss []string) (Matchers, []error) {
	var ms Matchers
	var errs []error
	for _, s := range ss {
		m, err := ParseMatcher(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms = append(ms, m)
	}
	return ms, errs
}
