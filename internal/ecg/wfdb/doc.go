// Package wfdb reads PhysioNet WFDB records: the header (.hea), signal files in formats 212
// and 16, and annotation files in the MIT format (.atr).
//
// Every parser bounds what it accepts (line lengths, number of signals, samples, annotations)
// and returns wrapped, lower-case errors that name the file and, for headers, the line.
// The package holds no state; all functions are safe for concurrent use.
//
// Format reference: the WFDB Programmer's Guide and the header(5), signal(5) and annot(5)
// manual pages published by PhysioNet.
package wfdb
