package wfdb

import "errors"

// Sentinel errors; parsers wrap them with the file and position.
var (
	// ErrSyntax marks malformed header, signal or annotation data.
	ErrSyntax = errors.New("syntax error")
	// ErrUnsupported marks valid WFDB features this package does not implement
	// (multi-segment records, signal formats other than 212 and 16, skew, multiple samples per frame).
	ErrUnsupported = errors.New("unsupported wfdb feature")
	// ErrLimit marks input larger than the package's limits.
	ErrLimit = errors.New("limit exceeded")
)
