// Package secret is pulselake's encrypted secret store: small named values (pseudonymization
// keys, OAuth tokens of wearable clouds) kept in a NATS KV bucket, each encrypted with
// AES-256-GCM under a master key that never leaves the machine.
//
// The master key comes from PULSELAKE_MASTER_KEY (32 bytes, base64 or hex) or, when that is
// unset, from <data>/master.key, generated on first use with mode 0600 and written durably
// (temporary name, fsync, then linked into place so two first starts cannot overwrite each other). A copy of the bucket without the master key reveals nothing.
//
// Every value is sealed with a fresh random 96-bit nonce; the secret's name is authenticated
// data, so a value moved to another name, or changed in any bit, fails to open. A check record
// sealed with the master key detects a wrong master key when the store is opened, before any
// secret is read. Values are never logged.
//
// Store is safe for concurrent use; it starts no goroutine.
package secret

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/durable"
)

// Bucket is the KV bucket secrets are kept in.
const Bucket = "pulselake_secrets"

// EnvMasterKey names the environment variable holding the master key.
const EnvMasterKey = "PULSELAKE_MASTER_KEY"

// KeyFile is the master key file under the data directory, used when EnvMasterKey is unset.
const KeyFile = "master.key"

// KeySize is the size of the master key: AES-256.
const KeySize = 32

// checkName is the record that proves the master key matches the one the bucket was sealed
// with. Secret names may not start with an underscore, so it cannot collide with one.
const checkName = "_master_key_check"

// formatV1 is the first byte of every sealed value: version 1 = AES-256-GCM, 12-byte nonce.
const formatV1 = 1

// Errors.
var (
	ErrNotFound       = errors.New("no such secret")
	ErrWrongMasterKey = errors.New("the master key does not match the one this secret store was sealed with")
	ErrTampered       = errors.New("secret value failed authentication (changed, moved or sealed under another key)")
	ErrBadName        = errors.New("invalid secret name")
	ErrBadMasterKey   = errors.New("invalid master key")
)

// KV is the part of a JetStream key-value bucket the store uses.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error)
}

// Options configures a Store.
type Options struct {
	// MasterKey is the 32-byte AES-256 key (see LoadMasterKey). Required.
	MasterKey []byte
}

// Store reads and writes encrypted secrets.
type Store struct {
	log      *slog.Logger
	kv       KV
	aead     cipher.AEAD
	failures prometheus.Counter
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.=-]{0,254}$`)

// ValidName reports whether name can name a secret: letters, digits, '_', '.', '=', '-',
// starting with a letter or digit, at most 255 characters.
func ValidName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") || strings.HasSuffix(name, ".") {
		return fmt.Errorf("%w %q: use letters, digits, '_', '.', '=', '-', starting with a letter or digit", ErrBadName, name)
	}
	return nil
}

// Open returns a store over kv. On a bucket with no check record it writes one; otherwise it
// verifies that o.MasterKey opens it and returns ErrWrongMasterKey if not. reg may be nil.
func Open(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, kv KV, o Options) (*Store, error) {
	if len(o.MasterKey) != KeySize {
		return nil, fmt.Errorf("%w: need %d bytes, got %d", ErrBadMasterKey, KeySize, len(o.MasterKey))
	}
	block, err := aes.NewCipher(o.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("creating cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("creating cipher: %w", err)
	}
	s := &Store{log: log, kv: kv, aead: aead, failures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pulselake_secret_open_failures_total",
		Help: "Secret values that failed to decrypt (tampering or a wrong master key).",
	})}
	if reg != nil {
		if err := reg.Register(s.failures); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("registering secret metrics: %w", err)
			}
			s.failures = are.ExistingCollector.(prometheus.Counter)
		}
	}
	if err := s.verifyMasterKey(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Store) verifyMasterKey(ctx context.Context) error {
	const plain = "pulselake secret store v1"
	e, err := s.kv.Get(ctx, checkName)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		sealed, err := s.seal(checkName, []byte(plain))
		if err != nil {
			return err
		}
		if _, err := s.kv.Create(ctx, checkName, sealed); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("writing master key check: %w", err)
		}
		e, err = s.kv.Get(ctx, checkName) // another process may have won the race
		if err != nil {
			return fmt.Errorf("reading master key check: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("reading master key check: %w", err)
	}
	got, err := s.open(checkName, e.Value())
	if err != nil || string(got) != plain {
		s.failures.Inc()
		return ErrWrongMasterKey
	}
	return nil
}

func (s *Store) seal(name string, value []byte) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(value)+s.aead.Overhead())
	out[0] = formatV1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("generating nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], value, []byte(name)), nil
}

func (s *Store) open(name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != formatV1 {
		return nil, ErrTampered
	}
	plain, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(name))
	if err != nil {
		return nil, ErrTampered
	}
	return plain, nil
}

// Put seals value and stores it under name, replacing any previous value.
func (s *Store) Put(ctx context.Context, name string, value []byte) error {
	if err := ValidName(name); err != nil {
		return err
	}
	sealed, err := s.seal(name, value)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, name, sealed); err != nil {
		return fmt.Errorf("storing secret %s: %w", name, err)
	}
	return nil
}

// Create stores value under name only if no secret has that name; otherwise it returns the
// existing value and created=false. Concurrent callers agree on one value.
func (s *Store) Create(ctx context.Context, name string, value []byte) (stored []byte, created bool, err error) {
	if err := ValidName(name); err != nil {
		return nil, false, err
	}
	sealed, err := s.seal(name, value)
	if err != nil {
		return nil, false, err
	}
	if _, err := s.kv.Create(ctx, name, sealed); err == nil {
		return value, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, fmt.Errorf("storing secret %s: %w", name, err)
	}
	v, err := s.Get(ctx, name)
	return v, false, err
}

// Get returns the value stored under name, ErrNotFound, or ErrTampered when it fails
// authentication.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	e, err := s.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s: %w", name, err)
	}
	v, err := s.open(name, e.Value())
	if err != nil {
		s.failures.Inc()
		s.log.Error("secret failed authentication", "name", name)
		return nil, fmt.Errorf("opening secret %s: %w", name, err)
	}
	return v, nil
}

// Delete removes a secret. Deleting a missing secret is not an error.
func (s *Store) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("deleting secret %s: %w", name, err)
	}
	return nil
}

// List returns the names of all secrets, sorted (never their values).
func (s *Store) List(ctx context.Context) ([]string, error) {
	l, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing secrets: %w", err)
	}
	defer l.Stop()
	var out []string
	for k := range l.Keys() {
		if k != checkName {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out, nil
}

// ParseMasterKey decodes a 32-byte key written as hex (64 digits) or base64 (standard or
// URL alphabet, padded or not).
func ParseMasterKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if len(text) == 2*KeySize {
		if b, err := hex.DecodeString(text); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("%w: decodes to %d bytes, need %d", ErrBadMasterKey, len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: not %d bytes in hex or base64 (generate one with: openssl rand -base64 32)", ErrBadMasterKey, KeySize)
}

// LoadMasterKey returns the master key from EnvMasterKey (getenv is os.Getenv in production)
// or from dataDir/master.key, creating that file with a random key (mode 0600) if it does not
// exist. created reports a new key file, so the caller can tell the user to back it up.
func LoadMasterKey(dataDir string, getenv func(string) string) (key []byte, created bool, err error) {
	if v := getenv(EnvMasterKey); v != "" {
		k, err := ParseMasterKey(v)
		if err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", EnvMasterKey, err)
		}
		return k, false, nil
	}
	path := filepath.Join(dataDir, KeyFile)
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseMasterKey(string(data))
		if err != nil {
			return nil, false, fmt.Errorf("reading %s: %w", path, err)
		}
		return k, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("reading master key: %w", err)
	}
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, false, fmt.Errorf("generating master key: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("creating data directory: %w", err)
	}
	if err := durable.Create(path, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
		if errors.Is(err, os.ErrExist) { // another process created it first: use theirs
			return LoadMasterKey(dataDir, func(string) string { return "" })
		}
		return nil, false, fmt.Errorf("writing master key: %w", err)
	}
	return k, true, nil
}
