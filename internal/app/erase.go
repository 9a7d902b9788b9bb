package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
)

// Erasure of a subject (right to erasure, `pulselake erase`, docs/privacy.md). Every place a
// subject's data lives is one named step of eraseSteps, run in that order; each step counts
// what the place holds of the subject, removes it, and counts again. A running serve holds
// part of that state in memory (alerts, reading windows, detector baselines, notification
// groups) and writes it back to its buckets, so erase reaches it through serve: the first
// step asks serve, over its NATS connection, to drop the subject from memory and from the
// buckets it owns; the later steps then clean the buckets, the stream and the lake
// themselves (which also covers the case where no serve runs).

// eraseSubjectNATS is where serve answers erase requests (internal user only).
const eraseSubjectNATS = "pulselake.internal.erase"

// eraseServeTimeout bounds the wait for serve's answer (it flushes the ops row buffer, which
// commits to the lake).
const eraseServeTimeout = 2 * time.Minute

// EraseOptions configures Erase.
type EraseOptions struct {
	// DryRun only counts.
	DryRun bool
	// Stream also deletes the subject's messages from the ingest stream.
	Stream bool
}

// EraseRow is what erase found and left in one place.
type EraseRow struct {
	Place  string `json:"place"`
	Before int64  `json:"before"`
	After  int64  `json:"after"`
	Note   string `json:"note,omitempty"`
}

// EraseReport is the outcome of Erase.
type EraseReport struct {
	Rows []EraseRow
	// Removed lists the lake files deleted; Erase deletes their copies in the query cache.
	Removed []string
	// StreamPending is the number of stream messages of the subject not yet processed by
	// every consumer (left in place: erase again after the lake flush).
	StreamPending int
	// StreamKept is the number of the subject's stream messages left in place because
	// erase ran without --stream.
	StreamKept int
}

// EraseStep is one place, or one kind of place, where a subject's data lives. Run counts
// (dryRun) or erases and reports before and after. A connector package adds a step for
// its credentials and cursors to eraseSteps.
type EraseStep struct {
	Name string
	Run  func(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error)
}

// eraser is what the steps work on.
type eraser struct {
	log   *slog.Logger
	conn  *stream.Conn
	store *lake.Store
	o     EraseOptions
	// fingerprints of the subject's alerts read from the alert-state bucket before anything
	// was removed (the notification log names alerts by them).
	fingerprints []notify.Fingerprint
	// counted is what the stream held of the subject when it was first counted; without
	// --stream nothing changes it, so the second pass reports it without scanning again.
	counted []lake.StreamPurge
	rep     *EraseReport
}

// eraseSteps lists every place a subject lives, in the order erase visits them: what a
// running serve holds in memory first (so it cannot write it back), then the buckets, the
// stream, and the lake (rows of every table, then unreferenced files).
func (e *eraser) eraseSteps() []EraseStep {
	steps := []EraseStep{
		{"serve memory", e.serveMemory},
		{"alert state", e.alertState},
		{"notification log", e.notificationLog},
		{"silences", e.silences},
		{"connectors", e.connectors}, // credentials, cursors and connections (connectors.go)
	}
	steps = append(steps, EraseStep{"stream", e.stream})
	return append(steps,
		EraseStep{"lake tables", e.lakeTables},
		EraseStep{"lake unreferenced files", e.lakeOrphans},
	)
}

// Erase removes subject from every place it lives (see eraseSteps) and reports, for each
// place, what it held before and after. It works while serve runs on the data directory
// (or the cluster) and when none does. With o.DryRun it only counts (Before = After).
func Erase(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config, subject string, o EraseOptions) (*EraseReport, error) {
	if strings.TrimSpace(subject) == "" {
		return nil, errors.New("erasing: the subject is empty; name the subject whose data to remove")
	}
	conn, closeConn, err := Dial(ctx, log, dataDir, cfg)
	if err != nil {
		return nil, err
	}
	defer closeConn()
	st, err := OpenLake(ctx, log, dataDir, cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	e := &eraser{log: log, conn: conn, store: st, o: o, rep: &EraseReport{}}
	kv, err := conn.KV(ctx, alertsBucket, "pulselake alert state")
	if err != nil {
		return nil, err
	}
	alerts, _, err := rules.SubjectState(ctx, kv, subject)
	if err != nil {
		return nil, err
	}
	for _, a := range alerts {
		e.fingerprints = append(e.fingerprints, notify.FingerprintOf(a.Labels))
	}
	steps := e.eraseSteps()
	// Count every place first, so that each row's Before is what the place held before
	// erase began (a step can clean a later place too: serve purges its own buckets).
	before := map[string]int64{}
	var order []string
	for _, s := range steps {
		rows, err := s.Run(ctx, subject, true)
		if err != nil {
			return e.rep, fmt.Errorf("counting %s: %w", s.Name, err)
		}
		for _, r := range rows {
			if _, ok := before[r.Place]; !ok {
				order = append(order, r.Place)
			}
			before[r.Place] += r.Before
		}
		if o.DryRun {
			e.rep.Rows = append(e.rep.Rows, rows...)
		}
	}
	if o.DryRun {
		return e.rep, nil
	}
	after := map[string]EraseRow{}
	for _, s := range steps {
		rows, err := s.Run(ctx, subject, false)
		for _, r := range rows {
			if _, ok := before[r.Place]; !ok {
				order = append(order, r.Place)
				before[r.Place] = r.Before
			}
			after[r.Place] = r
		}
		if err != nil {
			e.rep.Rows = mergeRows(order, before, after)
			return e.rep, errors.Join(fmt.Errorf("erasing %s: %w", s.Name, err), query.DropCachedCopies(dataDir, e.rep.Removed))
		}
	}
	e.rep.Rows = mergeRows(order, before, after)
	return e.rep, query.DropCachedCopies(dataDir, e.rep.Removed)
}

func mergeRows(order []string, before map[string]int64, after map[string]EraseRow) []EraseRow {
	out := make([]EraseRow, 0, len(order))
	for _, p := range order {
		r, ok := after[p]
		if !ok {
			r = EraseRow{Place: p, After: -1, Note: "not reached"}
		}
		r.Before = before[p]
		out = append(out, r)
	}
	return out
}

// eraseRequest and eraseReply are serve's erase protocol on eraseSubjectNATS.
type eraseRequest struct {
	Subject string `json:"subject"`
	DryRun  bool   `json:"dry_run"`
}

type eraseReply struct {
	Rows  []EraseRow `json:"rows"`
	Error string     `json:"error,omitempty"`
}

// serveMemory asks a running serve to drop the subject from memory (and the buckets it
// writes); without a serve nothing is in memory.
func (e *eraser) serveMemory(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	req, _ := json.Marshal(eraseRequest{Subject: subject, DryRun: dryRun})
	rctx, cancel := context.WithTimeout(ctx, eraseServeTimeout)
	defer cancel()
	msg, err := e.conn.NC.RequestWithContext(rctx, eraseSubjectNATS, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, nil // no serve runs
	}
	if err != nil {
		return nil, fmt.Errorf("asking the running serve to erase the subject from memory: %w", err)
	}
	var rep eraseReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return nil, fmt.Errorf("reading serve's erase answer: %w", err)
	}
	if rep.Error != "" {
		return rep.Rows, fmt.Errorf("serve: %s", rep.Error)
	}
	return rep.Rows, nil
}

func (e *eraser) alertState(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	kv, err := e.conn.KV(ctx, alertsBucket, "pulselake alert state")
	if err != nil {
		return nil, err
	}
	count := func() (int64, error) {
		alerts, seen, err := rules.SubjectState(ctx, kv, subject)
		return int64(len(alerts) + seen), err
	}
	row := EraseRow{Place: "alert state (KV " + alertsBucket + ")"}
	if row.Before, err = count(); err != nil || dryRun {
		row.After = row.Before
		return []EraseRow{row}, err
	}
	if err := rules.EraseSubjectState(ctx, kv, subject); err != nil {
		return []EraseRow{row}, err
	}
	row.After, err = count()
	return []EraseRow{row}, err
}

func (e *eraser) notificationLog(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	kv, err := e.conn.KV(ctx, nflogBucket, "pulselake notification log")
	if err != nil {
		return nil, err
	}
	b, a, err := notify.EraseLog(ctx, kv, subject, e.fingerprints, dryRun)
	return []EraseRow{{Place: "notification log (KV " + nflogBucket + ")", Before: int64(b), After: int64(a)}}, err
}

func (e *eraser) silences(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	sil, err := OpenSilences(ctx, e.log, e.conn)
	if err != nil {
		return nil, err
	}
	defer sil.Close()
	b, a, kept, err := sil.EraseSubject(ctx, subject, dryRun)
	row := EraseRow{Place: "silences muting only the subject (KV " + silencesBucket + ")", Before: int64(b), After: int64(a)}
	if kept > 0 {
		row.Note = fmt.Sprintf("%d silence(s) that also match other subjects name it and are kept", kept)
	}
	return []EraseRow{row}, err
}

// stream deletes the subject's messages from the streams with --stream; without it, it
// counts them, so the report never leaves out what the stream still holds.
func (e *eraser) stream(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	sp, err := e.counted, error(nil)
	if e.o.Stream || sp == nil {
		sp, err = lake.PurgeStream(ctx, e.conn.JS, subject, dryRun || !e.o.Stream)
		if !e.o.Stream && err == nil {
			e.counted = sp
		}
	}
	var rows []EraseRow
	for _, p := range sp {
		r := EraseRow{Place: "stream " + p.Stream, Before: int64(p.Matched), After: int64(p.Matched - p.Deleted)}
		if !e.o.Stream {
			if p.Matched > 0 {
				r.Note = "kept until the stream's retention ends (nats.retention); erase again with --stream to delete now"
				if !dryRun {
					e.rep.StreamKept += p.Matched
				}
			}
			rows = append(rows, r)
			continue
		}
		if p.Pending > 0 {
			r.Note = fmt.Sprintf("%d message(s) not yet processed by every consumer; erase again after the lake flush", p.Pending)
			if !dryRun {
				e.rep.StreamPending += p.Pending
			}
		}
		rows = append(rows, r)
	}
	return rows, err
}

func (e *eraser) lakeTables(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	res, err := e.store.Erase(ctx, subject, lake.EraseOptions{DryRun: dryRun})
	var rows []EraseRow
	for _, te := range res {
		r := EraseRow{Place: "lake " + te.Zone + "." + te.Name + " (rows)", Before: te.Before, After: te.After}
		if te.Rewritten > 0 {
			r.Note = fmt.Sprintf("%d file(s) rewritten, %d snapshot(s) expired, %d file(s) deleted", te.Rewritten, te.Expired, te.PurgedFiles)
		}
		e.rep.Removed = append(e.rep.Removed, te.Removed...)
		rows = append(rows, r)
	}
	return rows, err
}

func (e *eraser) lakeOrphans(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	count := func() (int64, error) {
		rep, err := e.store.RemoveOrphans(ctx, lake.OrphanOptions{OlderThan: -1, Subject: subject, DryRun: true})
		n := 0
		for _, r := range rep {
			n += len(r.OfSubject)
		}
		return int64(n), err
	}
	row := EraseRow{Place: "lake files no snapshot refers to, holding the subject"}
	var err error
	if row.Before, err = count(); err != nil || dryRun {
		row.After = row.Before
		return []EraseRow{row}, err
	}
	rep, err := e.store.RemoveOrphans(ctx, lake.OrphanOptions{OlderThan: -1, Subject: subject})
	for _, r := range rep {
		e.rep.Removed = append(e.rep.Removed, r.Removed...)
	}
	if err != nil {
		return []EraseRow{row}, err
	}
	row.After, err = count()
	return []EraseRow{row}, err
}

// memoryEraser drops a subject from one part of serve's memory (and the buckets that part
// writes). It returns what it held before and after, and the labels of the alerts it
// dropped (their notifications are forgotten too).
type memoryEraser struct {
	place string
	erase func(ctx context.Context, subject string, dryRun bool) (before, after int, labels []map[string]string, err error)
}

// addEraser registers a part of serve's memory that holds subjects' data.
func (n *node) addEraser(place string, erase func(ctx context.Context, subject string, dryRun bool) (int, int, []map[string]string, error)) {
	n.erasers = append(n.erasers, memoryEraser{place: place, erase: erase})
}

// startErase answers erase requests: the rule engine, the parts registered with addEraser,
// then the notification pipeline (told the fingerprints of every alert dropped), and the
// ops row buffer is flushed so that the subject's buffered rows reach the lake, where
// erase removes them next.
func startErase(n *node) error {
	n.erasers = append([]memoryEraser{{place: "rules: alerts, reading windows, device last-seen (serve memory and KV " + alertsBucket + ")",
		erase: n.alerting.engine.EraseSubject}}, n.erasers...)
	sub, err := n.conn.NC.Subscribe(eraseSubjectNATS, func(m *nats.Msg) {
		var req eraseRequest
		var rep eraseReply
		if err := json.Unmarshal(m.Data, &req); err != nil || strings.TrimSpace(req.Subject) == "" {
			rep.Error = "invalid erase request"
		} else {
			ctx, cancel := context.WithTimeout(n.ctx, eraseServeTimeout)
			rep.Rows, err = n.eraseMemory(ctx, req.Subject, req.DryRun)
			cancel()
			if err != nil {
				rep.Error = err.Error()
			}
		}
		b, _ := json.Marshal(rep)
		if err := m.Respond(b); err != nil {
			n.log.Warn("answering an erase request", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to erase requests: %w", err)
	}
	n.onClose(func() { _ = sub.Unsubscribe() })
	return nil
}

func (n *node) eraseMemory(ctx context.Context, subject string, dryRun bool) ([]EraseRow, error) {
	var rows []EraseRow
	var fps []notify.Fingerprint
	for _, me := range n.erasers {
		b, a, labels, err := me.erase(ctx, subject, dryRun)
		rows = append(rows, EraseRow{Place: me.place, Before: int64(b), After: int64(a)})
		if err != nil {
			return rows, fmt.Errorf("%s: %w", me.place, err)
		}
		for _, l := range labels {
			fps = append(fps, notify.FingerprintOf(l))
		}
	}
	b, a, err := n.alerting.dispatcher.EraseSubject(ctx, subject, fps, dryRun)
	rows = append(rows, EraseRow{Place: "notifications: alerts, groups, log (serve memory and KV " + nflogBucket + ")", Before: int64(b), After: int64(a)})
	if err != nil {
		return rows, err
	}
	if !dryRun {
		n.lake.ops.Flush(ctx)
		n.log.Info("erased a subject from memory", "places", len(rows))
	}
	return rows, nil
}
