package googlehealth

import "errors"

// ErrFitbitRetired is the error of a call the retired Fitbit Web API answered 410 Gone (or of
// an api_url pointing at it).
var ErrFitbitRetired = errors.New("the Fitbit Web API was retired (HTTP 410 Gone): " +
	"connect google-health instead (pulselake connect google-health --subject S), which reads the same data through the Google Health API")
