package lake

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// pageLike is n bytes that compress like a column page: repeated values with some noise.
func pageLike(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-12-04T03:%02d:%02d.%03dZ heart_rate %d bpm watch-%d;", r.IntN(60), r.IntN(60), r.IntN(1000), 50+r.IntN(80), r.IntN(3))
	}
	return b.Bytes()[:n]
}

// TestParquetZstdRoundTrip: pages compressed by the lake's codec are standard zstd frames
// that Arrow's own decoder (and a plain zstd decoder) reads back, at every level the lake
// may use.
func TestParquetZstdRoundTrip(t *testing.T) {
	codec, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := codec.(*parquetZstd); !ok {
		t.Fatalf("the registered zstd codec is %T", codec)
	}
	plain, _ := zstd.NewReader(nil)
	defer plain.Close()
	for _, n := range []int{10, 100 << 10, 1 << 20, 3 << 20} {
		src := pageLike(n)
		for _, level := range []int{compress.DefaultCompressionLevel, 1, 3} {
			enc := codec.EncodeLevel(nil, src, level)
			if len(enc) > int(codec.CompressBound(int64(n))) {
				t.Errorf("%d bytes at level %d: %d compressed, over the bound", n, level, len(enc))
			}
			dec, err := compress.Decode(codec, make([]byte, n), enc)
			if err != nil || !bytes.Equal(dec, src) {
				t.Fatalf("%d bytes at level %d: decoded %d bytes, err %v", n, level, len(dec), err)
			}
			if dec, err := plain.DecodeAll(enc, nil); err != nil || !bytes.Equal(dec, src) {
				t.Fatalf("%d bytes at level %d: a plain zstd decoder: %v", n, level, err)
			}
		}
	}
}

// TestParquetZstdMemory bounds what compressing a 1 MiB page allocates with a new encoder:
// with Arrow's codec it is 9 MiB (an 8 MiB window's history).
func TestParquetZstdMemory(t *testing.T) {
	src := pageLike(1 << 20)
	c := &parquetZstd{pools: map[zstd.EncoderLevel]*sync.Pool{}} // no encoder yet
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c.EncodeLevel(nil, src, 1)
	runtime.ReadMemStats(&after)
	got := after.TotalAlloc - before.TotalAlloc
	t.Logf("compressing a 1 MiB page with a new encoder allocated %.1f MiB", float64(got)/(1<<20))
	if got > 6<<20 {
		t.Fatalf("compressing a 1 MiB page with a new encoder allocated %d MiB", got>>20)
	}
}

// BenchmarkParquetZstd compresses a 1 MiB page at the lake's level with the lake's codec
// and with Arrow's.
func BenchmarkParquetZstd(b *testing.B) {
	src := pageLike(1 << 20)
	codec, _ := compress.GetCodec(compress.Codecs.Zstd)
	for _, c := range []struct {
		name  string
		codec compress.Codec
	}{{"lake", codec}, {"arrow", codec.(*parquetZstd).base}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			var dst []byte
			for b.Loop() {
				dst = c.codec.EncodeLevel(dst[:0], src, 1)
			}
			b.ReportMetric(float64(len(dst)), "compressed-bytes")
		})
	}
}
