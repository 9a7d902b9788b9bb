// Package counting counts the bytes an export reader has consumed, for the progress bar of
// `pulselake ingest` and the progress of GET /v1/imports/{id}. Readers are not safe for
// concurrent use, like the readers they wrap.
package counting

import "io"

// ReaderAt passes reads to R and reports the running total of bytes read to Report (which
// may be nil). Random-access reads of a zip archive count every byte each time it is read.
type ReaderAt struct {
	R      io.ReaderAt
	Report func(total int64)
	n      int64
}

// ReadAt implements io.ReaderAt.
func (c *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.R.ReadAt(p, off)
	c.n += int64(n)
	if c.Report != nil {
		c.Report(c.n)
	}
	return n, err
}
