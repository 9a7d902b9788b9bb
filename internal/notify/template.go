package notify

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"
)

// Data is what subject, body and text templates see: Alertmanager's notification data plus
// the reading values of each alert.
type Data struct {
	Receiver          string
	Status            string // firing when any alert fires, else resolved
	GroupKey          string
	GroupLabels       map[string]string
	CommonLabels      map[string]string
	CommonAnnotations map[string]string
	ExternalURL       string
	Alerts            TemplateAlerts
}

// TemplateAlert is one alert in Data.
type TemplateAlert struct {
	Status       string
	Labels       map[string]string
	Annotations  map[string]string
	Values       map[string]float64
	StartsAt     time.Time
	EndsAt       time.Time
	Fingerprint  string
	GeneratorURL string
}

// TemplateAlerts is a list with Firing and Resolved filters.
type TemplateAlerts []TemplateAlert

// Firing returns the firing alerts.
func (as TemplateAlerts) Firing() TemplateAlerts { return as.with(StatusFiring) }

// Resolved returns the resolved alerts.
func (as TemplateAlerts) Resolved() TemplateAlerts { return as.with(StatusResolved) }

func (as TemplateAlerts) with(status string) TemplateAlerts {
	var out TemplateAlerts
	for _, a := range as {
		if a.Status == status {
			out = append(out, a)
		}
	}
	return out
}

var templateFuncs = template.FuncMap{
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"join":  strings.Join,
	"values": func(v map[string]float64) string {
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, fmt.Sprintf("%s=%g", k, v[k]))
		}
		return strings.Join(parts, " ")
	},
	"time": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

const (
	defaultSubject = `[{{.Status | upper}}{{if eq .Status "firing"}}:{{len .Alerts.Firing}}{{end}}] {{index .GroupLabels "alertname"}}{{with index .CommonLabels "subject"}} {{.}}{{end}}{{with index .CommonLabels "device"}} {{.}}{{end}}`
	defaultBody    = `{{range .Alerts.Firing}}FIRING {{index .Labels "alertname"}} ({{index .Labels "severity"}})
  {{with index .Annotations "summary"}}{{.}}
  {{end}}{{with index .Annotations "description"}}{{.}}
  {{end}}subject {{index .Labels "subject"}}, device {{index .Labels "device"}}, since {{time .StartsAt}}
  reading: {{values .Values}}
{{end}}{{range .Alerts.Resolved}}RESOLVED {{index .Labels "alertname"}}
  {{with index .Annotations "summary"}}{{.}}
  {{end}}subject {{index .Labels "subject"}}, device {{index .Labels "device"}}, from {{time .StartsAt}} to {{time .EndsAt}}
{{end}}`
	defaultText = `{{range .Alerts}}{{if eq .Status "firing"}}:rotating_light: *{{index .Labels "alertname"}}*{{else}}:white_check_mark: resolved *{{index .Labels "alertname"}}*{{end}} {{index .Labels "subject"}}/{{index .Labels "device"}}: {{with index .Annotations "summary"}}{{.}}{{else}}{{values .Values}}{{end}}
{{end}}`
)

func parseTemplate(name, text, def string) (*template.Template, error) {
	if text == "" {
		text = def
	}
	t, err := template.New(name).Funcs(templateFuncs).Option("missingkey=zero").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing %s template: %w", name, err)
	}
	return t, nil
}

func execute(t *template.Template, d *Data) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", fmt.Errorf("executing %s template: %w", t.Name(), err)
	}
	return b.String(), nil
}
