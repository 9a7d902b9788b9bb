package anomaly

import (
	"errors"
	"fmt"
)

// ErrInvalidParam marks a parameter or option that cannot be used (a usage error for callers
// such as the detect command).
var ErrInvalidParam = errors.New("invalid parameter")

// ParseError is a problem at one place of a CSV input. Line and Column count from 1; Column is
// 0 when the problem concerns the whole line.
type ParseError struct {
	Line   int
	Column int
	Name   string // the column's header name, when known
	Err    error
}

func (e *ParseError) Error() string {
	switch {
	case e.Column > 0 && e.Name != "":
		return fmt.Sprintf("line %d, column %d (%q): %v", e.Line, e.Column, e.Name, e.Err)
	case e.Column > 0:
		return fmt.Sprintf("line %d, column %d: %v", e.Line, e.Column, e.Err)
	default:
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
}

func (e *ParseError) Unwrap() error { return e.Err }
