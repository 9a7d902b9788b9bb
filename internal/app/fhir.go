package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/fhir"
	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// fhirBase is the base of the FHIR R4 API (SPEC §11).
const fhirBase = "/fhir/r4"

// fhirSource is the batch source (landing.fhir) of Observations posted or imported.
const fhirSource = "fhir"

// FHIRMapper returns the FHIR mapping of cfg's kinds: the built-in ones and those declared
// with a LOINC code.
func FHIRMapper(cfg *config.Config) (*fhir.Mapper, error) {
	kinds, err := cfg.Registry()
	if err != nil {
		return nil, err
	}
	return fhir.NewMapper(kinds, cfg.FHIRCodes())
}

// FHIRExport is the FHIR file format of pulselake ingest (--format fhir): a Bundle (.json)
// or Bulk Data NDJSON (.ndjson), or a folder of them. Observations carry their subjects;
// with --subject, those of other subjects are refused. Observations that cannot become
// readings are kept in quarantine with the reason.
func FHIRExport(cfg *config.Config) (ingest.Export, error) {
	m, err := FHIRMapper(cfg)
	if err != nil {
		return ingest.Export{}, err
	}
	return ingest.Export{
		Format: "fhir", Source: fhirSource, Detect: fhir.Detect, OwnSubjects: true,
		Read: func(ctx context.Context, path string, o ingest.ExportOptions, _ func([]byte, string) error) error {
			return m.NewDecoder().ReadPath(ctx, path, o.Progress, func(raw []byte, origin string, rs []reading.Reading, issues []fhir.Issue) error {
				for _, r := range rs {
					if o.Subject != "" && r.Subject != o.Subject && issues == nil {
						issues = []fhir.Issue{{Type: fhir.IssueForbidden, Code: reading.CodeSubjectNotAllow, Expression: "subject.reference",
							Message: fmt.Sprintf("the import is limited to Patient/%s (--subject)", o.Subject)}}
					}
				}
				if issues != nil {
					return o.EmitRecord(ingest.Record{Raw: raw, Origin: origin, Rejected: fhir.FieldErrors(issues)})
				}
				for i := range rs {
					if err := o.EmitRecord(ingest.Record{Raw: raw, Origin: origin, Reading: &rs[i]}); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}, nil
}

// fhirAPI serves /fhir/r4: Bundles of Observations in, searches over the lake out.
type fhirAPI struct {
	log      *slog.Logger
	m        *fhir.Mapper
	in       *ingest.Ingester
	eng      *query.Engine
	lim      query.Limits
	decoders sync.Pool
}

// mountFHIR mounts the FHIR R4 API. Its errors, those of authentication included, are
// OperationOutcomes (SPEC §13).
func mountFHIR(ws *web.Server, n *node) {
	m, err := FHIRMapper(n.cfg)
	if err != nil { // config validation refuses such a configuration first
		n.log.Error("FHIR API not mounted", "err", err)
		return
	}
	a := &fhirAPI{log: n.log.With("component", "fhir"), m: m, in: n.ingester, eng: n.lake.engine, lim: queryLimits(n.cfg)}
	a.decoders.New = func() any { return m.NewDecoder() }
	ws.HandleWith("POST "+fhirBase+"/{$}", token.ScopeIngest, outcomeErrors, a.post)
	ws.HandleWith("POST "+fhirBase, token.ScopeIngest, outcomeErrors, a.post)
	ws.HandleWith("GET "+fhirBase+"/Observation", token.ScopeRead, outcomeErrors, a.search)
	ws.HandleWith("GET "+fhirBase+"/Observation/{id}", token.ScopeRead, outcomeErrors, a.read)
	ws.HandlePublic("GET "+fhirBase+"/metadata", http.HandlerFunc(a.metadata))
	notServed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOutcome(w, http.StatusNotFound, fhir.Outcome(fhir.IssueNotSupported, "",
			fmt.Sprintf("%s %s is not served; see GET %s/metadata for what is", r.Method, r.URL.Path, fhirBase)))
	})
	ws.HandlePublic(fhirBase, notServed)
	ws.HandlePublic(fhirBase+"/", notServed)
}

// writeResource writes a FHIR resource as application/fhir+json.
func writeResource(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", fhir.ContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent; a failed write has no one to tell
}

func writeOutcome(w http.ResponseWriter, status int, oo *fhir.OperationOutcome) {
	writeResource(w, status, oo)
}

// post serves POST /fhir/r4: a transaction (all or nothing) or batch (each entry on its
// own) Bundle of Observations, answered with a transaction-response or batch-response.
func (a *fhirAPI) post(w http.ResponseWriter, r *http.Request, tok token.Token) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != fhir.ContentType && mt != "application/json") {
			writeOutcome(w, http.StatusUnsupportedMediaType, fhir.Outcome(fhir.IssueNotSupported, "",
				fmt.Sprintf("content type %q is not supported; send %s", ct, fhir.ContentType)))
			return
		}
	}
	lim := a.in.Limits()
	if r.ContentLength > lim.MaxBodyBytes {
		writeOutcome(w, http.StatusRequestEntityTooLarge, fhir.Outcome(fhir.IssueTooCostly, "", bodyTooLarge(lim.MaxBodyBytes)))
		return
	}
	// The body must arrive within ingest.body_timeout; the deadline is lifted once it has.
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(lim.BodyTimeout)
	_ = rc.SetReadDeadline(deadline)
	body, release, err := a.in.ReadBody(r.Body, r.ContentLength)
	defer release()
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline) {
			w.Header().Set("Connection", "close")
			writeOutcome(w, http.StatusRequestTimeout, fhir.Outcome(fhir.IssueTransient, "",
				fmt.Sprintf("the request body did not arrive within %s (ingest.body_timeout); send it in one go, or in smaller Bundles", lim.BodyTimeout)))
			return
		}
		if !errors.Is(err, ingest.ErrBodyTooLarge) && !errors.Is(err, ingest.ErrOverloaded) {
			w.Header().Set("Connection", "close")
			writeOutcome(w, http.StatusBadRequest, fhir.Outcome(fhir.IssueInvalid, "", "reading the request body: "+err.Error()))
			return
		}
		w.Header().Set("Connection", "close") // the rest of the body is not read
		a.ingestError(w, err)
		return
	}
	b, err := fhir.ParseBundle(body, lim.MaxBatch, true)
	var be *fhir.BundleError
	if errors.As(err, &be) {
		writeOutcome(w, be.Status, fhir.OutcomeOf([]fhir.Issue{be.Issue}, "Bundle"))
		return
	}
	dec := a.decoders.Get().(*fhir.Decoder)
	entries := dec.Entries(b, true)
	a.decoders.Put(dec)
	for i := range entries {
		forbid(&entries[i], tok)
	}
	if b.Type == fhir.BundleTransaction {
		var issues []fhir.OutcomeIssue
		for i, e := range entries {
			issues = append(issues, fhir.OutcomeOf(e.Issues, fhir.EntryPath(i, e.EntryLevel)).Issue...)
		}
		if len(issues) > 0 {
			writeOutcome(w, http.StatusBadRequest, &fhir.OperationOutcome{ResourceType: fhir.TypeOperationOutcome, Issue: append(issues,
				fhir.OutcomeIssue{Severity: "information", Code: fhir.IssueProcessing, Diagnostics: "the transaction was not processed: nothing of it was stored; fix the entries named and send it again, or send a batch to store the valid entries"})})
			return
		}
	}
	recs, entryOf := fhirRecords(entries)
	res, err := a.in.Ingest(r.Context(), fhirSource, tok, recs)
	if err != nil {
		a.ingestError(w, err)
		return
	}
	writeResource(w, http.StatusOK, responseBundle(b.Type, entries, recs, entryOf, res))
}

// forbid refuses an entry whose readings are of a subject tok may not write.
func forbid(e *fhir.Entry, tok token.Token) {
	for _, rd := range e.Readings {
		if !tok.Sees(rd.Subject) {
			e.Readings = nil
			e.Issues = []fhir.Issue{{Type: fhir.IssueForbidden, Code: reading.CodeSubjectNotAllow, Expression: "subject.reference",
				Message: fmt.Sprintf("this token may only send Observations of Patient/%s", tok.Subject)}}
			return
		}
	}
}

// fhirRecords turns entries into records to store, one per reading or refused entry, and
// returns the entry of each record.
func fhirRecords(entries []fhir.Entry) ([]ingest.Record, []int) {
	var recs []ingest.Record
	var entryOf []int
	for i := range entries {
		e := &entries[i]
		origin := fmt.Sprintf("Bundle.entry[%d]", i)
		if e.Issues != nil {
			recs = append(recs, ingest.Record{Raw: e.Raw, Origin: origin, Rejected: fhir.FieldErrors(e.Issues)})
			entryOf = append(entryOf, i)
			continue
		}
		for j := range e.Readings {
			recs = append(recs, ingest.Record{Raw: e.Raw, Origin: origin, Reading: &e.Readings[j]})
			entryOf = append(entryOf, i)
		}
	}
	return recs, entryOf
}

// responseBundle is the transaction-response or batch-response of entries stored as res.
func responseBundle(typ string, entries []fhir.Entry, recs []ingest.Record, entryOf []int, res ingest.Result) *fhir.Bundle {
	out := &fhir.Bundle{ResourceType: fhir.TypeBundle, Type: fhir.BundleBatchResponse, Timestamp: time.Now().UTC().Format(time.RFC3339),
		Entry: make([]fhir.BundleEntry, len(entries))}
	if typ == fhir.BundleTransaction {
		out.Type = fhir.BundleTransactionResponse
	}
	dups := make([]int, len(entries))
	for _, k := range res.DuplicateIndexes {
		dups[entryOf[k]]++
	}
	rejected := map[int][]fhir.Issue{}
	for _, rej := range res.Rejected {
		if i := entryOf[rej.Index]; entries[i].Issues == nil {
			rejected[i] = append(rejected[i], fhir.Issue{Type: fhir.IssueValue, Code: rej.Code, Expression: rej.Path, Message: rej.Message})
		}
	}
	for i, e := range entries {
		resp := &fhir.EntryResponse{}
		out.Entry[i].Response = resp
		issues := e.Issues
		if issues == nil {
			issues = rejected[i]
		}
		if issues != nil {
			resp.Status = entryStatus(e, issues)
			resp.Outcome = fhir.OutcomeOf(issues, fhir.EntryPath(i, e.EntryLevel))
			continue
		}
		resp.Status = "201 Created"
		if dups[i] == len(e.Readings) {
			resp.Status = "200 OK"
		}
		resp.Location = "Observation/" + e.Readings[0].Identity().String()
	}
	_ = recs
	return out
}

// entryStatus is the HTTP status of a refused entry: 400 for a request or resource that
// cannot be read, 403 for a subject the token may not write, 422 for one that breaks the
// profile or pulselake's mapping.
func entryStatus(e fhir.Entry, issues []fhir.Issue) string {
	switch {
	case e.EntryLevel || issues[0].Type == fhir.IssueStructure:
		return "400 Bad Request"
	case issues[0].Type == fhir.IssueForbidden:
		return "403 Forbidden"
	}
	return "422 Unprocessable Entity"
}

func bodyTooLarge(limit int64) string {
	return fmt.Sprintf("request body above the %d-byte limit; send smaller Bundles (ingest.max_body_bytes)", limit)
}

// ingestError answers an error of reading the body or storing the batch.
func (a *fhirAPI) ingestError(w http.ResponseWriter, err error) {
	var tooLarge *ingest.RecordTooLargeError
	status, typ, msg := http.StatusInternalServerError, fhir.IssueException, err.Error()
	switch {
	case errors.Is(err, ingest.ErrBodyTooLarge):
		status, typ, msg = http.StatusRequestEntityTooLarge, fhir.IssueTooCostly, bodyTooLarge(a.in.Limits().MaxBodyBytes)
	case errors.As(err, &tooLarge):
		status, typ = http.StatusRequestEntityTooLarge, fhir.IssueTooCostly
	case errors.Is(err, ingest.ErrOverloaded):
		status, typ = http.StatusTooManyRequests, "throttled"
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, ingest.ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status, typ = http.StatusServiceUnavailable, fhir.IssueTransient
		w.Header().Set("Retry-After", "1")
	default:
		a.log.Error("FHIR request failed", "err", err)
	}
	writeOutcome(w, status, fhir.Outcome(typ, "", msg))
}

// obsSearch is one search of Observations in the lake.
type obsSearch struct {
	subject  string
	kinds    []string // nil: every kind with a code
	from, to time.Time
	id       string
	count    int
	offset   int
	// after, when set, pages by key instead of offset: the entries after it in time,
	// kind, id order; no total is counted.
	after *obsKey
}

// obsKey is the position of an Observation in search order.
type obsKey struct {
	time     time.Time
	kind, id string
}

// obsPage is a page of a search: the Observations and how many match in all.
type obsPage struct {
	total int
	obs   []*fhir.Observation
	last  *obsKey // the key of the last row read, nil when none
}

// search serves GET /fhir/r4/Observation: a searchset Bundle with total and paging links.
func (a *fhirAPI) search(w http.ResponseWriter, r *http.Request, tok token.Token) {
	s, serr := a.parseSearch(r.URL.Query(), tok)
	if serr != nil {
		writeOutcome(w, serr.Status, fhir.OutcomeOf([]fhir.Issue{serr.Issue}, ""))
		return
	}
	page, err := searchLake(r.Context(), a.eng, a.m, s, query.CallerOf(tok), a.lim)
	if err != nil {
		a.queryError(w, err)
		return
	}
	base := baseURL(r)
	b := &fhir.Bundle{ResourceType: fhir.TypeBundle, Type: fhir.BundleSearchset, Timestamp: time.Now().UTC().Format(time.RFC3339), Total: &page.total}
	b.Link = []fhir.BundleLink{{Relation: "self", URL: base + r.URL.Path + "?" + pageQuery(r.URL.Query(), s.offset, s.count)}}
	if s.offset+len(page.obs) < page.total {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next", URL: base + r.URL.Path + "?" + pageQuery(r.URL.Query(), s.offset+s.count, s.count)})
	}
	if s.offset > 0 {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "previous", URL: base + r.URL.Path + "?" + pageQuery(r.URL.Query(), max(0, s.offset-s.count), s.count)})
	}
	for _, o := range page.obs {
		raw, err := json.Marshal(o)
		if err != nil {
			a.queryError(w, err)
			return
		}
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: base + fhirBase + "/Observation/" + o.ID, Resource: raw, Search: &fhir.EntrySearch{Mode: "match"}})
	}
	writeResource(w, http.StatusOK, b)
}

// pageQuery is q with the paging parameters set.
func pageQuery(q url.Values, offset, count int) string {
	q = cloneValues(q)
	q.Set("_count", strconv.Itoa(count))
	q.Set("_offset", strconv.Itoa(offset))
	return q.Encode()
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// baseURL is the scheme and host the client reached.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// read serves GET /fhir/r4/Observation/{id}.
func (a *fhirAPI) read(w http.ResponseWriter, r *http.Request, tok token.Token) {
	id := r.PathValue("id")
	if _, err := reading.ParseID(id); err != nil {
		writeOutcome(w, http.StatusNotFound, fhir.Outcome(fhir.IssueNotFound, "", fmt.Sprintf("Observation/%s does not exist: ids are 32 hexadecimal digits", id)))
		return
	}
	page, err := searchLake(r.Context(), a.eng, a.m, obsSearch{id: id, count: 1}, query.CallerOf(tok), a.lim)
	if err != nil {
		a.queryError(w, err)
		return
	}
	if len(page.obs) == 0 {
		writeOutcome(w, http.StatusNotFound, fhir.Outcome(fhir.IssueNotFound, "", fmt.Sprintf("Observation/%s does not exist (or is of a subject this token may not read)", id)))
		return
	}
	writeResource(w, http.StatusOK, page.obs[0])
}

func (a *fhirAPI) queryError(w http.ResponseWriter, err error) {
	status, typ := http.StatusInternalServerError, fhir.IssueException
	switch {
	case errors.Is(err, query.ErrForbidden):
		status, typ = http.StatusForbidden, fhir.IssueForbidden
	case errors.Is(err, query.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		status, typ = http.StatusServiceUnavailable, fhir.IssueTransient
		w.Header().Set("Retry-After", "1")
	default:
		a.log.Error("FHIR search failed", "err", err)
	}
	writeOutcome(w, status, fhir.Outcome(typ, "", err.Error()))
}

// parseSearch reads the search parameters; a token bound to a subject searches only it and
// is refused others.
func (a *fhirAPI) parseSearch(q url.Values, tok token.Token) (obsSearch, *fhir.SearchError) {
	fs, serr := a.m.ParseSearch(q)
	if serr != nil {
		return obsSearch{}, serr
	}
	s := obsSearch{subject: fs.Subject, kinds: fs.Kinds, from: fs.From, to: fs.To, count: fs.Count, offset: fs.Offset}
	if tok.Bound() {
		if s.subject != "" && s.subject != tok.Subject {
			return s, &fhir.SearchError{Status: http.StatusForbidden, Issue: fhir.Issue{Type: fhir.IssueForbidden, Code: reading.CodeSubjectNotAllow,
				Expression: "subject", Message: fmt.Sprintf("this token may only read Observations of Patient/%s", tok.Subject)}}
		}
		s.subject = tok.Subject
	}
	return s, nil
}

// searchLake runs s over the trusted tables of the kinds that have a code, for caller c.
func searchLake(ctx context.Context, eng *query.Engine, m *fhir.Mapper, s obsSearch, c query.Caller, lim query.Limits) (obsPage, error) {
	union, err := obsUnion(ctx, eng.Store(), m, s)
	if err != nil || union == "" {
		return obsPage{}, err
	}
	var page obsPage
	order := ""
	if s.after != nil {
		k := s.after
		t := query.TimestampLiteral(k.time)
		order = fmt.Sprintf(` WHERE "time" > %s OR ("time" = %s AND (kind > %s OR (kind = %s AND id > %s)))`,
			t, t, query.Literal(k.kind), query.Literal(k.kind), query.Literal(k.id))
	}
	if s.id == "" && s.after == nil {
		res, err := eng.QueryAs(ctx, "SELECT count(*) FROM ("+union+") AS o", lim, c)
		if err != nil {
			return page, err
		}
		if len(res.Rows) == 1 {
			page.total = int(toInt(res.Rows[0][0]))
		}
		if s.offset >= page.total {
			return page, nil
		}
	}
	lim.MaxRows = s.count
	res, err := eng.QueryAs(ctx, fmt.Sprintf(`SELECT kind, subject, device, "time", id, v FROM (%s) AS o%s ORDER BY "time", kind, id LIMIT %d OFFSET %d`,
		union, order, s.count, s.offset), lim, c)
	if err != nil {
		return page, err
	}
	for _, row := range res.Rows {
		if t, ok := row[3].(time.Time); ok {
			page.last = &obsKey{time: t, kind: fmt.Sprint(row[0]), id: fmt.Sprint(row[4])}
		}
		o, err := observationOf(m, row)
		if err != nil {
			return page, err
		}
		if o != nil {
			page.obs = append(page.obs, o)
		}
	}
	if s.id != "" {
		page.total = len(page.obs)
	}
	return page, nil
}

// obsUnion is the SELECT over every table s reads: kind, subject, device, time, id and
// the values as JSON (v). "" when no table holds such readings yet.
func obsUnion(ctx context.Context, st *lake.Store, m *fhir.Mapper, s obsSearch) (string, error) {
	names, err := st.TableNames(ctx, lake.ZoneTrusted)
	if err != nil {
		return "", fmt.Errorf("listing trusted tables: %w", err)
	}
	kinds := m.Kinds()
	if s.kinds != nil {
		kinds = s.kinds
	}
	var where []string
	if s.subject != "" {
		where = append(where, "subject = "+query.Literal(s.subject))
	}
	if !s.from.IsZero() {
		where = append(where, `"time" >= `+query.TimestampLiteral(s.from))
	}
	if !s.to.IsZero() {
		where = append(where, `"time" < `+query.TimestampLiteral(s.to))
	}
	if s.id != "" {
		where = append(where, "id = "+query.Literal(s.id))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var parts []string
	for _, kind := range kinds {
		if !slices.Contains(names, kind) {
			continue
		}
		cols, err := tableColumns(ctx, st, kind)
		if err != nil {
			return "", err
		}
		var fields []string
		for _, f := range m.Fields(kind) {
			if slices.Contains(cols, f) {
				fields = append(fields, query.Literal(f)+": "+query.Ident(f))
			}
		}
		if len(fields) == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf(`SELECT %s AS kind, subject, device, "time", id, CAST(to_json({%s}) AS VARCHAR) AS v FROM %s.%s%s`,
			query.Literal(kind), strings.Join(fields, ", "), query.Ident(lake.ZoneTrusted), query.Ident(kind), cond))
	}
	return strings.Join(parts, " UNION ALL "), nil
}

// tableColumns lists the columns of trusted.<kind>.
func tableColumns(ctx context.Context, st *lake.Store, kind string) ([]string, error) {
	t, err := st.Load(ctx, lake.ZoneTrusted, kind)
	if err != nil {
		return nil, fmt.Errorf("loading table trusted.%s: %w", kind, err)
	}
	var cols []string
	for _, f := range t.Schema().Fields() {
		cols = append(cols, f.Name)
	}
	return cols, nil
}

// observationOf makes the Observation of one row of obsUnion; nil when the row lacks the
// values its code needs.
func observationOf(m *fhir.Mapper, row []any) (*fhir.Observation, error) {
	str := func(v any) string { s, _ := v.(string); return s }
	t, ok := row[3].(time.Time)
	if !ok {
		return nil, fmt.Errorf("reading an Observation row: time is %T", row[3])
	}
	rd := reading.Reading{Kind: str(row[0]), Subject: str(row[1]), Device: str(row[2]), Time: t.UTC(), Values: map[string]float64{}}
	var vals map[string]any
	dec := json.NewDecoder(strings.NewReader(str(row[5])))
	dec.UseNumber()
	if err := dec.Decode(&vals); err != nil {
		return nil, fmt.Errorf("reading the values of an Observation row: %w", err)
	}
	for k, v := range vals {
		switch v := v.(type) {
		case json.Number:
			f, _ := v.Float64()
			rd.Values[k] = f
		case []any:
			for _, e := range v {
				n, _ := e.(json.Number)
				f, _ := n.Float64()
				rd.Samples = append(rd.Samples, f)
			}
		}
	}
	o, ok := m.Encode(&rd, str(row[4]))
	if !ok {
		return nil, nil
	}
	return o, nil
}

func toInt(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case int32:
		return int64(v)
	case uint64:
		return int64(v)
	case float64:
		return int64(v)
	}
	n, _ := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	return n
}

// metadata serves GET /fhir/r4/metadata: the CapabilityStatement, exactly what is served.
func (a *fhirAPI) metadata(w http.ResponseWriter, r *http.Request) {
	codes := strings.Join(a.m.Codes(), ", ")
	writeResource(w, http.StatusOK, &fhir.CapabilityStatement{
		ResourceType: "CapabilityStatement",
		Status:       "active",
		Date:         time.Now().UTC().Format(time.DateOnly),
		Kind:         "instance",
		Software:     &fhir.CapabilitySoftware{Name: "pulselake"},
		Implementation: &fhir.CapabilityImpl{
			Description: "pulselake: vital-sign Observations in and out of the lake",
			URL:         baseURL(r) + fhirBase,
		},
		FHIRVersion: "4.0.1",
		Format:      []string{"json"},
		Rest: []fhir.CapabilityRest{{
			Mode: "server",
			Documentation: "Transaction (all or nothing) and batch Bundles of Observations are stored as readings; each entry must be " +
				"POST Observation, optionally conditional on ifNoneExist identifier=system|value. Codes mapped: " + codes + ".",
			Security: &fhir.CapabilitySecurity{Description: "Authorization: Bearer <token>; POST needs scope ingest, reads scope read; " +
				"a token bound to a subject reads and writes only Patient/<subject>."},
			Resource: []fhir.CapabilityResource{{
				Type:              fhir.TypeObservation,
				Profile:           fhir.ProfileVitalSigns,
				Interaction:       []fhir.Interaction{{Code: "read"}, {Code: "search-type"}},
				Versioning:        "no-version",
				ConditionalCreate: true,
				SearchParam: []fhir.SearchParam{
					{Name: "subject", Type: "reference", Documentation: "Patient/<subject> or <subject>"},
					{Name: "patient", Type: "reference", Documentation: "the same as subject"},
					{Name: "code", Type: "token", Documentation: "system|code or code, comma-separated for any of them"},
					{Name: "date", Type: "date", Documentation: "prefixes eq, ge, gt, le, lt; repeat for a range"},
					{Name: "_count", Type: "number", Documentation: fmt.Sprintf("page size, 1..%d (default %d)", fhir.MaxCount, fhir.DefaultCount)},
					{Name: "_offset", Type: "number", Documentation: "entries to skip (the next link sets it)"},
				},
			}},
			Interaction: []fhir.Interaction{{Code: "transaction"}, {Code: "batch"}},
		}},
	})
}

// outcomeErrors rewrites the error bodies of SPEC §13 a FHIR route's wrapper writes
// (authentication, scope) as OperationOutcomes.
func outcomeErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ow := &outcomeWriter{ResponseWriter: w}
		h.ServeHTTP(ow, r)
		if ow.status == 0 {
			return
		}
		var body httpapi.ErrorBody
		_ = json.Unmarshal(ow.buf.Bytes(), &body)
		typ := map[int]string{http.StatusUnauthorized: "login", http.StatusForbidden: fhir.IssueForbidden, http.StatusNotFound: fhir.IssueNotFound,
			http.StatusTooManyRequests: "throttled", http.StatusServiceUnavailable: fhir.IssueTransient}[ow.status]
		if typ == "" {
			typ = fhir.IssueProcessing
		}
		writeOutcome(w, ow.status, fhir.Outcome(typ, "", strings.TrimSpace(body.Error.Code+": "+body.Error.Message)))
	})
}

// outcomeWriter holds back an error response that is not FHIR already.
type outcomeWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (o *outcomeWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest && o.Header().Get("Content-Type") != fhir.ContentType {
		o.status = code
		return
	}
	o.ResponseWriter.WriteHeader(code)
}

func (o *outcomeWriter) Write(p []byte) (int, error) {
	if o.status != 0 {
		if o.buf.Len() < 64<<10 {
			o.buf.Write(p)
		}
		return len(p), nil
	}
	return o.ResponseWriter.Write(p)
}

// Unwrap gives http.ResponseController the underlying writer (read deadlines).
func (o *outcomeWriter) Unwrap() http.ResponseWriter { return o.ResponseWriter }

// ExportFHIROptions selects what ExportFHIR writes.
type ExportFHIROptions struct {
	Subject string    // only this subject ("" for all)
	Since   time.Time // only readings at or after it (zero for all)
	Output  string    // folder of the NDJSON files
	// PageSize is how many Observations are read per query (default 5000).
	PageSize int
}

// exportPage is how many Observations ExportFHIR reads per query by default.
const exportPage = 5000

// ExportFHIR writes the lake's readings as FHIR Bulk Data NDJSON, one file per resource
// type (Observation.ndjson), each written to a temporary name, synced and renamed. It
// returns the number of Observations written.
func ExportFHIR(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config, o ExportFHIROptions) (int, error) {
	m, err := FHIRMapper(cfg)
	if err != nil {
		return 0, err
	}
	eng, err := OpenQuery(ctx, log, dataDir, cfg)
	if err != nil {
		return 0, err
	}
	defer eng.Close()
	if err := os.MkdirAll(o.Output, 0o755); err != nil {
		return 0, fmt.Errorf("creating %s: %w", o.Output, err)
	}
	final := filepath.Join(o.Output, "Observation.ndjson")
	f, err := os.CreateTemp(o.Output, ".Observation.ndjson-*")
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", final, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	s := obsSearch{subject: o.Subject, from: o.Since, count: exportPage}
	if o.PageSize > 0 {
		s.count = o.PageSize
	}
	lim := queryLimits(cfg)
	lim.Timeout = max(lim.Timeout, 10*time.Minute)
	n := 0
	var line []byte
	for {
		page, err := searchLake(ctx, eng, m, s, query.Caller{}, lim)
		if err != nil {
			return n, fmt.Errorf("exporting Observations: %w", err)
		}
		for _, obs := range page.obs {
			if line, err = json.Marshal(obs); err != nil {
				return n, err
			}
			if _, err := f.Write(append(line, '\n')); err != nil {
				return n, fmt.Errorf("writing %s: %w", final, err)
			}
			n++
		}
		if page.last == nil {
			break
		}
		s.after = page.last
	}
	if err := f.Sync(); err != nil {
		return n, fmt.Errorf("writing %s: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return n, fmt.Errorf("writing %s: %w", final, err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return n, fmt.Errorf("writing %s: %w", final, err)
	}
	return n, nil
}
