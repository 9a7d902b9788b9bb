package lake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	iceio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulselake/pulselake/internal/stream"
)

// DefaultEraseAttempts bounds how often one table's erase commit is retried when another
// process (the lake writer of a running serve, compaction, a pipeline) commits to the same
// table at the same time.
const DefaultEraseAttempts = 30

// PropOperation is the snapshot summary key that names pulselake's own maintenance
// operations ("erase").
const PropOperation = "pulselake.operation"

// EraseOptions configures Store.Erase.
type EraseOptions struct {
	// DryRun counts the subject's rows and changes nothing.
	DryRun bool
	// MaxAttempts bounds the commits tried per table when they conflict with concurrent
	// commits. Default DefaultEraseAttempts.
	MaxAttempts int
}

// TableErasure is what Erase did to one table that has a subject column.
type TableErasure struct {
	Zone, Name string
	// Before and After are the subject's rows in the table's current snapshot before and
	// after the erase (After equals Before in a dry run).
	Before, After int64
	// Rewritten is the number of data files removed or rewritten without the subject's rows.
	Rewritten int
	// Expired is the number of older snapshots expired so that no snapshot still refers to
	// a removed file; PurgedFiles is how many of the removed data files were deleted from
	// storage.
	Expired     int
	PurgedFiles int
	// Attempts is the number of delete commits tried (more than 1 after conflicts).
	Attempts int
	// Removed lists the locations of the removed data files (copies of them elsewhere, such
	// as a query cache, must go too).
	Removed []string
}

// Erase removes every row whose subject column equals subject from every table of every zone
// that has such a column (right to erasure, SPEC §2). Each table gets one copy-on-write
// Iceberg commit that drops or rewrites the data files holding the subject's rows; then the
// snapshots older than that commit are expired and their data files deleted from storage,
// so the rows are gone from disk and not only from the current snapshot. Table properties
// (the writer's stream watermark among them) are left as they are.
//
// Erase is safe while serve runs on the same catalog: a commit that conflicts with a
// concurrent one is redone on the reloaded table. It returns one TableErasure per table with
// a subject column, also when it fails part way (the error says which table).
func (s *Store) Erase(ctx context.Context, subject string, o EraseOptions) ([]TableErasure, error) {
	if strings.TrimSpace(subject) == "" {
		return nil, errors.New("erasing: the subject is empty; name the subject whose rows to remove")
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultEraseAttempts
	}
	var out []TableErasure
	for _, z := range Zones {
		names, err := s.TableNames(ctx, z)
		if err != nil {
			return out, err
		}
		for _, n := range names {
			t, err := s.Load(ctx, z, n)
			if err != nil {
				return out, err
			}
			if _, ok := t.Schema().FindFieldByName(ColSubject); !ok {
				continue
			}
			te := TableErasure{Zone: z, Name: n}
			err = s.eraseTable(ctx, t, subject, o, &te)
			out = append(out, te)
			if err != nil {
				return out, fmt.Errorf("erasing subject from %s.%s: %w", z, n, err)
			}
		}
	}
	return out, nil
}

func subjectFilter(subject string) iceberg.BooleanExpression {
	return iceberg.EqualTo(iceberg.Reference(ColSubject), subject)
}

// deleteFilter selects the subject's rows for Transaction.Delete. iceberg-go rewrites a file
// keeping the rows where NOT filter holds; for a NULL subject NOT (subject = S) is NULL, and
// those rows (rejected payloads without a subject) would be dropped too. With the explicit
// NOT NULL the complement is (subject != S OR subject IS NULL), true for them.
func deleteFilter(subject string) iceberg.BooleanExpression {
	return iceberg.NewAnd(subjectFilter(subject), iceberg.NotNull(iceberg.Reference(ColSubject)))
}

// conflicted reports whether a commit failed because another commit moved the table first;
// nothing was committed then. The SQL catalog reports a failed requirement (the branch
// moved) as a plain error, not as table.ErrCommitFailed.
// emptied reports whether t's current snapshot holds no data file.
func emptied(t *table.Table) bool {
	snap := t.CurrentSnapshot()
	return snap != nil && snap.Summary != nil && snap.Summary.Properties["total-data-files"] == "0"
}

// unsetMain removes the main branch of t, provided it still points at t's current snapshot.
func (s *Store) unsetMain(ctx context.Context, zone, name string, t *table.Table) (*table.Table, error) {
	id := t.CurrentSnapshot().SnapshotID
	if _, _, err := s.cat.CommitTable(ctx, table.Identifier{zone, name},
		[]table.Requirement{table.AssertRefSnapshotID(table.MainBranch, &id)},
		[]table.Update{table.NewRemoveSnapshotRefUpdate(table.MainBranch)}); err != nil {
		return nil, err
	}
	return s.Load(ctx, zone, name)
}

// currentID is the ID of t's current snapshot, 0 when it has none.
func currentID(t *table.Table) int64 {
	if snap := t.CurrentSnapshot(); snap != nil {
		return snap.SnapshotID
	}
	return 0
}

func conflicted(err error) bool {
	return errors.Is(err, table.ErrCommitFailed) || strings.Contains(strings.ToLower(err.Error()), "requirement failed")
}

// CountSubject counts the rows of subject in t's current snapshot.
func CountSubject(ctx context.Context, t *table.Table, subject string) (int64, error) {
	if t.CurrentSnapshot() == nil {
		return 0, nil
	}
	_, recs, err := t.Scan(table.WithRowFilter(subjectFilter(subject)), table.WithSelectedFields(ColSubject)).ToArrowRecords(ctx)
	if err != nil {
		return 0, fmt.Errorf("counting rows of %s: %w", strings.Join(t.Identifier(), "."), err)
	}
	var n int64
	for rec, err := range recs {
		if err != nil {
			return 0, fmt.Errorf("counting rows of %s: %w", strings.Join(t.Identifier(), "."), err)
		}
		n += rec.NumRows()
		rec.Release()
	}
	return n, nil
}

// eraseTable removes the subject's rows from one table in four steps: the delete commit,
// the merge of its manifests, the expiry of the snapshots before it, and the check that the
// removed files are gone from storage.
func (s *Store) eraseTable(ctx context.Context, t *table.Table, subject string, o EraseOptions, te *TableErasure) error {
	defer s.forget(te.Zone + "." + te.Name) // this process's cached handle is stale after a commit
	before, err := CountSubject(ctx, t, subject)
	if err != nil {
		return err
	}
	te.Before, te.After = before, before
	if o.DryRun || before == 0 {
		return nil
	}
	fio, err := t.FS(ctx)
	if err != nil {
		return fmt.Errorf("opening the table's storage: %w", err)
	}
	// The files and manifests the delete writes are unreferenced until their commits: the
	// write gate keeps orphan sweeps away meanwhile.
	release, err := s.gate.hold(ctx, false)
	if err != nil {
		return err
	}
	defer release()
	erased, removed, err := s.deleteSubject(ctx, fio, t, subject, o.MaxAttempts, te)
	if err != nil {
		return err
	}
	te.Rewritten = len(removed)
	t, err = s.mergeDeleteManifests(ctx, te, erased, o.MaxAttempts)
	if err != nil {
		return err
	}
	if t, err = s.expireBefore(ctx, t, erased, o.MaxAttempts, te); err != nil {
		return err
	}
	for f := range removed {
		if err := fileGone(fio, f); err != nil {
			return err
		}
		te.PurgedFiles++
		te.Removed = append(te.Removed, f)
	}
	slices.Sort(te.Removed)
	te.After, err = CountSubject(ctx, t, subject)
	return err
}

// deleteSubject commits the copy-on-write delete of the subject's rows and returns the table
// after it and the data files it removed. A delete redone after a conflict re-plans against
// the new snapshot, so rows of the subject that a concurrent append brought in go too.
func (s *Store) deleteSubject(ctx context.Context, fio iceio.IO, t *table.Table, subject string, maxAttempts int, te *TableErasure) (*table.Table, map[string]struct{}, error) {
	var removed map[string]struct{}
	erased, attempts, err := s.retryOnConflict(ctx, te, t, maxAttempts, func(t *table.Table, attempt int) (*table.Table, error) {
		baseFiles, err := snapshotFiles(fio, t.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		tx := t.NewTransaction()
		if err := tx.Delete(ctx, deleteFilter(subject), iceberg.Properties{PropOperation: "erase"}); err != nil {
			return nil, fmt.Errorf("rewriting files: %w", err)
		}
		staged, err := tx.StagedTable()
		if err != nil {
			return nil, fmt.Errorf("staging the delete: %w", err)
		}
		stagedFiles, err := snapshotFiles(fio, staged.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		nt, err := tx.Commit(ctx)
		if err == nil {
			removed = minus(baseFiles, stagedFiles)
			return nt, nil
		}
		if conflicted(err) {
			// A clean conflict committed nothing, so the files this attempt wrote are
			// referenced by nothing; delete them (they hold other subjects' rows only).
			// After any other failure the catalog may have accepted the commit: every file
			// it may refer to is kept.
			for f := range minus(stagedFiles, baseFiles) {
				_ = fio.Remove(f)
			}
			s.log.Info("erase commit conflicted with a concurrent commit", "table", te.Zone+"."+te.Name, "attempt", attempt)
		}
		return nil, err
	})
	te.Attempts = attempts
	switch {
	case err != nil && conflicted(err):
		return nil, nil, fmt.Errorf("committing the delete: still conflicting after %d attempts: %w", attempts, err)
	case err != nil:
		return nil, nil, fmt.Errorf("committing the delete: %w", err)
	}
	return erased, removed, nil
}

// mergeDeleteManifests drops the delete's entries for the removed files from the manifests:
// they list them as deleted entries, with their column bounds (which can be the subject
// itself). Merging the manifests drops those entries; the snapshot holding them is expired
// with the others afterwards. (iceberg-go leaves a table's only manifest as it is; see
// docs/lake.md.)
func (s *Store) mergeDeleteManifests(ctx context.Context, te *TableErasure, erased *table.Table, maxAttempts int) (*table.Table, error) {
	zone, name := te.Zone, te.Name
	t := erased
	if emptied(erased) {
		// Nothing is left but that manifest, which no merge rewrites: the table goes back
		// to having no snapshot (its main branch is removed, unless a commit came in since),
		// and the expiry removes every snapshot.
		nt, err := s.unsetMain(ctx, zone, name, erased)
		switch {
		case err == nil:
			t = nt
		case !conflicted(err):
			return nil, fmt.Errorf("emptying the table: %w", err)
		default: // a concurrent commit added files (and a manifest): the merge works
			if t, err = s.Load(ctx, zone, name); err != nil {
				return nil, err
			}
		}
	}
	nt, attempts, err := s.retryOnConflict(ctx, te, t, maxAttempts, func(t *table.Table, _ int) (*table.Table, error) {
		tx := t.NewTransaction()
		res, err := tx.RewriteManifests(ctx)
		if err != nil {
			return nil, err
		}
		if res.IsNoOp() {
			return t, nil
		}
		return tx.Commit(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("rewriting manifests (attempt %d): %w", attempts, err)
	}
	return nt, nil
}

// expireBefore expires every snapshot older than the delete (the current snapshot of
// erased): they refer to the removed files, which iceberg-go deletes from storage once no
// retained snapshot refers to them. It returns the table after the expiry.
func (s *Store) expireBefore(ctx context.Context, t, erased *table.Table, maxAttempts int, te *TableErasure) (*table.Table, error) {
	del := erased.CurrentSnapshot().TimestampMs
	for time.Now().UnixMilli() <= del { // "older than" is strict: let the clock pass the delete
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return nil, err
		}
	}
	t, attempts, err := s.retryOnConflict(ctx, te, t, maxAttempts, func(t *table.Table, _ int) (*table.Table, error) {
		// Older than the delete: every snapshot taken at or before it. Snapshots committed
		// after it (a concurrent append) may go as well except the current one, which is
		// always kept; they refer to the rewritten files, not the removed ones.
		age := time.Duration(time.Now().UnixMilli()-del-1) * time.Millisecond
		tx := t.NewTransaction()
		if err := tx.ExpireSnapshots(table.WithOlderThan(age), table.WithRetainLast(1)); err != nil {
			return nil, err
		}
		nsnap := len(t.Metadata().Snapshots())
		nt, err := tx.Commit(ctx)
		if nt != nil && err != nil { // committed; deleting the unreferenced files afterwards failed
			if !onlyNotExist(err) {
				return nil, fmt.Errorf("expired old snapshots but deleting their files failed: %w", err)
			}
			err = nil // files an earlier erase already deleted: expired manifests list them again
		}
		if err != nil {
			return nil, err
		}
		te.Expired = nsnap - len(nt.Metadata().Snapshots())
		return nt, nil
	})
	if err != nil {
		return nil, fmt.Errorf("expiring old snapshots (attempt %d): %w", attempts, err)
	}
	for _, snap := range t.Metadata().Snapshots() {
		if snap.TimestampMs <= del && snap.SnapshotID != erased.CurrentSnapshot().SnapshotID && snap.SnapshotID != currentID(t) {
			return nil, fmt.Errorf("snapshot %d from before the erase is still retained (is it referenced by a tag or branch?)", snap.SnapshotID)
		}
	}
	return t, nil
}

// retryOnConflict calls commit with t (the table of te), and again with t reloaded from the
// catalog after each attempt that conflicted with a concurrent commit, waiting with back-off
// between them, until an attempt does not conflict or maxAttempts did. It returns the last
// attempt's result and the number of attempts.
func (s *Store) retryOnConflict(ctx context.Context, te *TableErasure, t *table.Table, maxAttempts int, commit func(t *table.Table, attempt int) (*table.Table, error)) (*table.Table, int, error) {
	for attempt := 1; ; attempt++ {
		if attempt > 1 {
			var err error
			if t, err = s.Load(ctx, te.Zone, te.Name); err != nil {
				return nil, attempt, err
			}
		}
		nt, err := commit(t, attempt)
		if err == nil || !conflicted(err) || attempt >= maxAttempts {
			return nt, attempt, err
		}
		if err := sleepCtx(ctx, backoff(attempt)); err != nil {
			return nil, attempt, err
		}
	}
}

// onlyNotExist reports whether every error joined in err is about a file that does not exist.
func onlyNotExist(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyNotExist(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, fs.ErrNotExist)
}

// fileGone makes sure a removed data file no longer exists in storage, deleting it if an
// expired snapshot's clean-up left it behind.
func fileGone(fio iceio.IO, path string) error {
	f, err := fio.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking that %s was deleted: %w", path, err)
	}
	f.Close()
	if err := fio.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting replaced data file %s: %w", path, err)
	}
	return nil
}

// snapshotFiles is the set of live data files of snap.
func snapshotFiles(fio iceio.IO, snap *table.Snapshot) (map[string]struct{}, error) {
	files := map[string]struct{}{}
	if snap == nil {
		return files, nil
	}
	mans, err := snap.Manifests(fio)
	if err != nil {
		return nil, fmt.Errorf("reading manifests of snapshot %d: %w", snap.SnapshotID, err)
	}
	for _, m := range mans {
		if m.ManifestContent() != iceberg.ManifestContentData {
			continue
		}
		for e, err := range m.Entries(fio, true) {
			if err != nil {
				return nil, fmt.Errorf("reading manifest %s: %w", m.FilePath(), err)
			}
			files[e.DataFile().FilePath()] = struct{}{}
		}
	}
	return files, nil
}

// minus returns the keys of a that are not in b.
func minus(a, b map[string]struct{}) map[string]struct{} {
	out := map[string]struct{}{}
	for k := range a {
		if _, ok := b[k]; !ok {
			out[k] = struct{}{}
		}
	}
	return out
}

func backoff(attempt int) time.Duration {
	return min(50*time.Millisecond<<min(attempt-1, 5), time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StreamPurge is what PurgeStream did to one stream.
type StreamPurge struct {
	Stream string
	// Scanned is the number of messages read; Matched those holding a payload of the
	// subject; Deleted those of them securely deleted (overwritten in the store).
	Scanned, Matched, Deleted int
	// Pending are matched messages not yet acknowledged by every consumer of the stream
	// (the lake writer among them); they are left in place, and their rows may still reach
	// the lake: erase again once the lake has flushed.
	Pending int
}

// PurgeStream removes the subject's payloads from the ingest stream and from the store of
// MQTT messages. JetStream cannot rewrite a message, so a message (a batch of records, or
// one MQTT payload) that holds any record of the subject is deleted whole with
// SecureDeleteMsg, which overwrites it in the file store. Only messages that every consumer
// of the stream has acknowledged are deleted: their records are in the lake already (and the
// lake keeps every payload in landing.<source>), so nothing that has not been processed is
// lost. The other records of a deleted batch stay in the lake. With dryRun it only counts.
func PurgeStream(ctx context.Context, js jetstream.JetStream, subject string, dryRun bool) ([]StreamPurge, error) {
	if strings.TrimSpace(subject) == "" {
		return nil, errors.New("purging the stream: the subject is empty")
	}
	var out []StreamPurge
	for _, name := range []string{stream.IngestStream, stream.MQTTStream} {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("opening stream %s: %w", name, err)
		}
		sp, err := purgeStream(ctx, s, name, subject, dryRun)
		out = append(out, sp)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func purgeStream(ctx context.Context, s jetstream.Stream, name, subject string, dryRun bool) (StreamPurge, error) {
	sp := StreamPurge{Stream: name}
	info, err := s.Info(ctx)
	if err != nil {
		return sp, fmt.Errorf("reading stream %s: %w", name, err)
	}
	if info.State.Msgs == 0 {
		return sp, nil
	}
	last := info.State.LastSeq
	// Messages up to floor are acknowledged by every consumer.
	floor := last
	consumers := s.ListConsumers(ctx)
	for ci := range consumers.Info() {
		floor = min(floor, ci.AckFloor.Stream)
	}
	if err := consumers.Err(); err != nil {
		return sp, fmt.Errorf("listing consumers of %s: %w", name, err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return sp, fmt.Errorf("reading stream %s: %w", name, err)
	}
	for done := false; !done; {
		batch, err := c.Fetch(256, jetstream.FetchMaxBytes(stream.FollowerPullBytes), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return sp, fmt.Errorf("reading stream %s: %w", name, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				return sp, fmt.Errorf("reading stream %s: %w", name, err)
			}
			seq := meta.Sequence.Stream
			if seq > last {
				done = true
				break
			}
			sp.Scanned++
			if messageHolds(name, m.Data(), subject) {
				sp.Matched++
				switch {
				case seq > floor:
					sp.Pending++
				case !dryRun:
					if err := s.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
						return sp, fmt.Errorf("deleting message %d of %s: %w", seq, name, err)
					}
					sp.Deleted++
				}
			}
			if seq == last {
				done = true
				break
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return sp, fmt.Errorf("reading stream %s: %w", name, err)
		}
		if got == 0 { // nothing more to read (the rest expired or was deleted meanwhile)
			done = true
		}
	}
	return sp, nil
}

// messageHolds reports whether a stream message holds a record of subject: a batch envelope
// of the ingest stream (accepted readings and rejected payloads) or one MQTT payload.
func messageHolds(streamName string, data []byte, subject string) bool {
	if streamName != stream.IngestStream {
		return payloadHolds(data, subject)
	}
	if env, err := stream.Payload(data); err == nil { // a compressed envelope is judged by what it holds
		data = env
	}
	_, rest, _ := bytes.Cut(data, []byte{'\n'}) // header line
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		var e struct {
			Reading struct {
				Subject string `json:"subject"`
			} `json:"reading"`
			Raw     json.RawMessage `json:"raw"`
			RawText *string         `json:"raw_text"`
		}
		if json.Unmarshal(line, &e) != nil {
			// Not an envelope entry: judge the bytes.
			if payloadHolds(line, subject) {
				return true
			}
			continue
		}
		if e.Reading.Subject == subject || payloadHolds(e.Raw, subject) || (e.RawText != nil && payloadHolds([]byte(*e.RawText), subject)) {
			return true
		}
	}
	return false
}

// payloadHolds reports whether a payload as received (a reading, an array of readings, or
// bytes that are not JSON) names subject: a "subject" member equal to it, or, for bytes
// that do not parse, the quoted subject anywhere in them.
func payloadHolds(raw []byte, subject string) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return false
	}
	var one struct {
		Subject any `json:"subject"`
	}
	if json.Unmarshal(raw, &one) == nil {
		return one.Subject == subject
	}
	var many []struct {
		Subject any `json:"subject"`
	}
	if json.Unmarshal(raw, &many) == nil {
		for _, r := range many {
			if r.Subject == subject {
				return true
			}
		}
		return false
	}
	q, _ := json.Marshal(subject)
	return bytes.Contains(raw, q)
}
