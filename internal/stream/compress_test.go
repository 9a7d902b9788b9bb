package stream

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pulselake/pulselake/internal/reading"
)

// Published envelopes are stored compressed, several times smaller, and decode (in full,
// filtered, identities only) exactly as the envelope they hold; an envelope stored
// uncompressed (by an earlier build) still decodes.
func TestPublishStoresCompressedEnvelopes(t *testing.T) {
	_, conn := startTest(t)
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	ctx := context.Background()
	b := testBatch(t, p, 2000)
	if _, err := conn.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	s, _ := conn.JS.Stream(ctx, IngestStream)
	msg, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	plain := b.Encode(nil)
	if !Compressed(msg.Data) || len(msg.Data)*4 > len(plain) {
		t.Fatalf("stored %d bytes (compressed %v) for a %d-byte envelope, want a compressed message under a quarter of it",
			len(msg.Data), Compressed(msg.Data), len(plain))
	}
	if got := PayloadSize(msg.Data); got != len(plain) {
		t.Errorf("PayloadSize = %d, want %d", got, len(plain))
	}
	env, err := Payload(msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	// The header holds the receive time as stored (UTC); the entries are byte for byte.
	_, storedEntries, _ := bytes.Cut(env, []byte{'\n'})
	_, plainEntries, _ := bytes.Cut(plain, []byte{'\n'})
	if !bytes.Equal(storedEntries, plainEntries) {
		t.Fatal("the stored envelope's entries differ from the batch's encoding")
	}
	for name, data := range map[string][]byte{"compressed": msg.Data, "uncompressed": env} {
		got, err := Decode(data, p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got.Entries) != len(b.Entries) {
			t.Fatalf("%s: %d entries, want %d", name, len(got.Entries), len(b.Entries))
		}
		for i := range got.Entries {
			if got.Entries[i].Identity != b.Entries[i].Identity || !bytes.Equal(got.Entries[i].Raw, b.Entries[i].Raw) {
				t.Fatalf("%s: entry %d = %+v", name, i, got.Entries[i])
			}
		}
		ids := 0
		if err := Identities(data, p, func(time.Time, reading.ID) { ids++ }); err != nil || ids != 2000 {
			t.Errorf("%s: Identities: %d, %v; want 2000", name, ids, err)
		}
	}
	// Stored again: JetStream's de-duplication still sees the same records.
	if dups, err := conn.Publish(ctx, testBatch(t, p, 2000)); err != nil || dups != 1 {
		t.Errorf("re-publish: dups=%d err=%v, want 1 duplicate", dups, err)
	}
}

// A damaged frame, and one that would decompress beyond MaxPayloadBytes, are not envelopes.
func TestPayloadRejectsBadFrames(t *testing.T) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	c := Compress(testBatch(t, p, 500).Encode(nil))
	if !Compressed(c) {
		t.Fatal("a batch of 500 readings was not compressed")
	}
	bad := bytes.Clone(c)
	bad[len(bad)/2] ^= 0xff
	bad[len(bad)/2+1] ^= 0xff
	if _, err := Decode(bad, p); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("damaged frame: err = %v, want ErrBadEnvelope", err)
	}
	enc, _ := zstd.NewWriter(nil)
	bomb := enc.EncodeAll(make([]byte, MaxPayloadBytes+1), nil)
	if _, err := Payload(bomb); !errors.Is(err, ErrBadEnvelope) {
		t.Errorf("frame of %d bytes: err = %v, want ErrBadEnvelope", MaxPayloadBytes+1, err)
	}
	// Incompressible data is stored as it is.
	if in := []byte(`{"v":1}`); !bytes.Equal(Compress(in), in) {
		t.Error("a tiny envelope was compressed into something larger")
	}
}

// FlushBytes bounds a batch by the envelopes' decompressed size, even when one pull brings
// many times that much (pulls are bounded by stored, compressed, bytes).
func TestConsumeBatchBoundedByDecodedBytes(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "bounded", 30*time.Second)
	p := reading.NewParser(f.kinds)
	const msgs = 12
	var last uint64
	for i := range msgs {
		b := &Batch{Source: SourceHTTP, Received: time.Now()}
		for j := range 1000 {
			raw := []byte(`{"subject":"p1","device":"hr-1","kind":"heart_rate","time":` + itoa(1795428000000+int64(i*1000+j)) + `,"values":{"bpm":70}}`)
			r, errs := p.Parse(raw)
			if errs != nil {
				t.Fatal(errs)
			}
			b.Entries = append(b.Entries, Entry{Identity: r.Identity(), Reading: &r, Raw: raw})
		}
		if _, err := f.conn.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		last = f.lastSeq()
	}
	s, _ := f.conn.JS.Stream(context.Background(), IngestStream)
	m, _ := s.GetMsg(context.Background(), last)
	size := PayloadSize(m.Data)
	budget := int64(size*5/2) + 1 // every batch: at most three messages
	var mu sync.Mutex
	var batches []int
	f.run(cons, ConsumerOptions{Name: "bounded", Mode: ModeRetryInPlace, FlushInterval: time.Minute, FlushBytes: budget,
		FetchMessages: 100, FetchBytes: 8 << 20,
		HandleBatch: func(_ context.Context, ms []*Msg) error {
			mu.Lock()
			defer mu.Unlock()
			batches = append(batches, len(ms))
			return nil
		}})
	ackedThrough(t, cons, msgs) // 12 messages: four full batches, with nothing left to wait for
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, n := range batches {
		if n > 3 {
			t.Errorf("a batch of %d messages of %d decoded bytes each; the budget is %d bytes", n, size, budget)
		}
		total += n
	}
	if total != msgs {
		t.Errorf("handed %d messages in batches %v, want %d", total, batches, msgs)
	}
}

// A consumer pulls DefaultPullBytes at a time; a message larger than that (an envelope of
// incompressible records) still arrives, by a larger pull, and in order.
func TestConsumeMessageLargerThanPull(t *testing.T) {
	f := newConsumeFixture(t)
	cons := f.follow(f.conn, "large", 30*time.Second)
	rnd := rand.New(rand.NewPCG(1, 2))
	big := &Batch{Source: SourceHTTP, Received: time.Now()}
	for range 3 {
		raw := make([]byte, 1<<20)
		for i := range raw {
			raw[i] = byte('a' + rnd.IntN(26))
		}
		big.Entries = append(big.Entries, Entry{Errors: reading.Errors{{Code: reading.CodeInvalidJSON, Message: "x"}}, Raw: raw})
	}
	if _, err := f.conn.Publish(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	s, _ := f.conn.JS.Stream(context.Background(), IngestStream)
	if m, err := s.GetMsg(context.Background(), f.lastSeq()); err != nil || len(m.Data) <= DefaultPullBytes {
		t.Fatalf("stored message of %d bytes (%v), want one above %d", len(m.Data), err, DefaultPullBytes)
	}
	last := f.publish("after")
	var mu sync.Mutex
	var seqs []uint64
	var entries []int
	f.run(cons, ConsumerOptions{Name: "large", Handle: func(_ context.Context, m *Msg) error {
		mu.Lock()
		defer mu.Unlock()
		seqs = append(seqs, m.Seq)
		entries = append(entries, len(m.Batch.Entries))
		return nil
	}})
	ackedThrough(t, cons, last)
	mu.Lock()
	defer mu.Unlock()
	if len(seqs) != 2 || seqs[0] != last-1 || seqs[1] != last || entries[0] != 3 {
		t.Errorf("handled messages %v with %v entries, want %d (3 entries) then %d", seqs, entries, last-1, last)
	}
}

// BenchmarkEnvelopeCompression compresses and decompresses an envelope of 5,000 readings
// (an import's chunk), as the publisher and each consumer do.
func BenchmarkEnvelopeCompression(b *testing.B) {
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	env := testBatch(b, p, 5000).Encode(nil)
	frame := Compress(env)
	b.Run("compress", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for range b.N {
			Compress(env)
		}
		b.ReportMetric(float64(len(env))/float64(len(frame)), "ratio")
	})
	b.Run("decompress", func(b *testing.B) {
		b.SetBytes(int64(len(env)))
		for range b.N {
			if _, err := Payload(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
}
