package imports

import (
	"context"

	"github.com/pulselake/pulselake/internal/connector/applehealth"
	"github.com/pulselake/pulselake/internal/connector/takeout"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/reading"
)

// Export formats, as --format and POST /v1/imports?format= name them.
const (
	FormatAppleHealth   = "apple-health"
	FormatGoogleTakeout = "google-takeout"
)

// Exports are the wearable export formats pulselake imports, in the order they are tried
// when the format is detected.
func Exports() []ingest.Export {
	return []ingest.Export{
		{
			Format: FormatAppleHealth, Source: applehealth.Source, Detect: applehealth.Detect,
			Read: func(ctx context.Context, path string, o ingest.ExportOptions, emit func([]byte, string) error) error {
				ao := applehealth.Options{Subject: o.Subject, Progress: o.Progress}
				if o.EmitRecord != nil { // readings go typed: the ingester checks them without parsing them again
					ao.EmitReading = func(r *reading.Reading, raw []byte, origin string) error {
						return o.EmitRecord(ingest.Record{Raw: raw, Origin: origin, Reading: r})
					}
				}
				_, err := applehealth.Read(ctx, path, ao, emit)
				return err
			},
		},
		{
			Format: FormatGoogleTakeout, Source: takeout.Source, Detect: takeout.Detect,
			Read: func(ctx context.Context, path string, o ingest.ExportOptions, emit func([]byte, string) error) error {
				_, err := takeout.Read(ctx, path, takeout.Options{Subject: o.Subject, Location: o.Location, Progress: o.Progress}, emit)
				return err
			},
		},
	}
}
