package lake

import (
	"io"
	"sync"

	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/klauspost/compress/zstd"
)

// The lake's Parquet files are zstd-compressed page by page (write.parquet.compression-codec).
// Arrow's zstd codec compresses each page with pooled encoders of zstd's default 8 MiB
// window, each keeping a history buffer of at least the window (9 MiB allocated for a 1 MiB
// page, TestParquetZstdMemory), although a page is about 1 MiB (the writer's data page
// size). parquetZstd compresses the same frames with a 1 MiB window and the encoder's
// low-memory mode (2.3 MiB allocated, history included); it decodes with Arrow's codec, so
// every file written before or after reads the same.
//
// A page larger than the window is still one valid frame; its matches are at most 1 MiB
// back instead of 8 MiB, which costs little on columns of readings.
const parquetZstdWindow = 1 << 20

type parquetZstd struct {
	base compress.Codec // Arrow's codec: decoding, streaming, CompressBound

	mu    sync.Mutex
	pools map[zstd.EncoderLevel]*sync.Pool
}

var _ compress.ErrorCodec = (*parquetZstd)(nil)

func init() {
	base, err := compress.GetCodec(compress.Codecs.Zstd)
	if err != nil {
		return // this Arrow build has no zstd: nothing to replace
	}
	compress.RegisterCodec(compress.Codecs.Zstd, &parquetZstd{base: base, pools: map[zstd.EncoderLevel]*sync.Pool{}})
}

func (c *parquetZstd) pool(level zstd.EncoderLevel) *sync.Pool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pools[level]
	if p == nil {
		p = &sync.Pool{New: func() any {
			// The options of Arrow's encoders, but for the window and the memory mode.
			enc, err := zstd.NewWriter(nil, zstd.WithZeroFrames(true), zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
				zstd.WithAllLitEntropyCompression(true), zstd.WithWindowSize(parquetZstdWindow), zstd.WithLowerEncoderMem(true))
			if err != nil {
				return nil // EncodeLevel falls back to Arrow's codec
			}
			return enc
		}}
		c.pools[level] = p
	}
	return p
}

// level maps a Parquet compression level to zstd's, as Arrow's codec does.
func parquetZstdLevel(level int) zstd.EncoderLevel {
	if level == compress.DefaultCompressionLevel {
		return zstd.SpeedDefault
	}
	return zstd.EncoderLevelFromZstd(level)
}

func (c *parquetZstd) EncodeLevel(dst, src []byte, level int) []byte {
	l := parquetZstdLevel(level)
	p := c.pool(l)
	enc, _ := p.Get().(*zstd.Encoder)
	if enc == nil {
		return c.base.EncodeLevel(dst, src, level)
	}
	defer p.Put(enc)
	return enc.EncodeAll(src, dst[:0])
}

func (c *parquetZstd) Encode(dst, src []byte) []byte {
	return c.EncodeLevel(dst, src, compress.DefaultCompressionLevel)
}

func (c *parquetZstd) CompressBound(n int64) int64 { return c.base.CompressBound(n) }

func (c *parquetZstd) Decode(dst, src []byte) []byte { return c.base.Decode(dst, src) }

func (c *parquetZstd) DecodeWithError(dst, src []byte) ([]byte, error) {
	return compress.Decode(c.base, dst, src)
}

// The streaming interface (not used for Parquet pages) is Arrow's.

func (c *parquetZstd) NewReader(r io.Reader) io.ReadCloser {
	return c.base.(compress.StreamingCodec).NewReader(r)
}

func (c *parquetZstd) NewWriter(w io.Writer) io.WriteCloser {
	return c.base.(compress.StreamingCodec).NewWriter(w)
}

func (c *parquetZstd) NewWriterLevel(w io.Writer, level int) (io.WriteCloser, error) {
	return c.base.(compress.StreamingCodec).NewWriterLevel(w, level)
}
