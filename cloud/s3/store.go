package s3

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/iotagent/iotagent/cloud/sigv4"
	"github.com/iotagent/iotagent/cloud/store"
)

// Errors for callers that branch.
var (
	ErrNoSuchBucket = errors.New("s3: no such bucket")
	ErrNoSuchKey    = errors.New("s3: no such key")
	ErrNoSuchUpload = errors.New("s3: no such upload")
	ErrInvalid      = errors.New("s3: invalid request")
	ErrTooLarge     = errors.New("s3: object too large")
)

// Buckets of the store database.
const (
	bucketBuckets = "s3.buckets"
	bucketObjects = "s3.objects"
	bucketUploads = "s3.uploads"
	bucketMeta    = "s3.meta"
)

// DefaultMaxObjectBytes is the default bound on one object (and on one part
// of a multipart upload): iotsim holds OTA artifacts, not a data lake.
const DefaultMaxObjectBytes = 512 << 20

// Object is an object's metadata.
type Object struct {
	Bucket       string    `json:"bucket"`
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	ETag         string    `json:"etag"` // quoted, as S3 sends it
	ContentType  string    `json:"contentType,omitempty"`
	LastModified time.Time `json:"lastModified"`
	File         string    `json:"file"` // base name under the objects dir
}

// Bucket is a bucket.
type Bucket struct {
	Name         string    `json:"name"`
	CreationDate time.Time `json:"creationDate"`
}

// upload is a multipart upload in progress.
type upload struct {
	ID          string           `json:"id"`
	Bucket      string           `json:"bucket"`
	Key         string           `json:"key"`
	ContentType string           `json:"contentType,omitempty"`
	Parts       map[int]partInfo `json:"parts"`
	Initiated   time.Time        `json:"initiated"`
}

type partInfo struct {
	File string `json:"file"`
	Size int64  `json:"size"`
	MD5  string `json:"md5"` // hex of the part's MD5
}

// Options configure a Store.
type Options struct {
	DB  *store.DB // metadata; required
	Dir string    // object files; required
	// BaseURL is the store's public URL, e.g. "http://127.0.0.1:8080/s3",
	// used in presigned URLs.
	BaseURL string
	Region  string // for presigned URLs' credential scope; default us-east-1
	Now     func() time.Time
	// Credentials are the access key pair every request must be
	// SigV4-signed with (header or presigned query); PresignGet signs with
	// them too. With neither Credentials nor NoAuth, every request is
	// refused.
	Credentials *sigv4.Credentials
	// NoAuth turns authentication off (iotsim serve --auth none).
	NoAuth bool
	// MaxObjectBytes bounds an object, a part and a completed multipart
	// upload; larger ones get EntityTooLarge. Zero means
	// DefaultMaxObjectBytes.
	MaxObjectBytes int64
}

// Store is the object store. It is safe for concurrent use.
type Store struct {
	o Options

	mu sync.Mutex // serialises metadata writes
}

// New opens (creating if needed) the store in o.Dir.
func New(o Options) (*Store, error) {
	if o.DB == nil || o.Dir == "" {
		return nil, fmt.Errorf("new s3 store: %w: DB and Dir are required", ErrInvalid)
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	for _, d := range []string{o.Dir, filepath.Join(o.Dir, "objects"), filepath.Join(o.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("new s3 store: %w", err)
		}
	}
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = DefaultMaxObjectBytes
	}
	s := &Store{o: o}
	return s, nil
}

// ValidBucketName reports whether name is a usable bucket name: 3-63 of
// [a-z0-9.-], starting and ending with a letter or digit.
func ValidBucketName(name string) bool {
	if len(name) < 3 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return name[0] != '.' && name[0] != '-' && name[len(name)-1] != '.' && name[len(name)-1] != '-'
}

// validKey reports whether key is a usable object key: 1-1024 bytes of UTF-8.
func validKey(key string) bool {
	return key != "" && len(key) <= 1024 && utf8.ValidString(key) && !strings.ContainsRune(key, 0)
}

func objectID(bucket, key string) string { return bucket + "/" + key }

// CreateBucket creates a bucket; an existing one is not an error.
func (s *Store) CreateBucket(name string) error {
	if !ValidBucketName(name) {
		return fmt.Errorf("create bucket %q: %w: bucket names are 3-63 of [a-z0-9.-]", name, ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createBucketLocked(name)
}

func (s *Store) createBucketLocked(name string) error {
	if _, err := s.o.DB.Get(bucketBuckets, name); err == nil {
		return nil
	}
	b, _ := json.Marshal(Bucket{Name: name, CreationDate: s.o.Now().UTC()})
	if err := s.o.DB.Put(bucketBuckets, name, b); err != nil {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// HasBucket reports whether the bucket exists.
func (s *Store) HasBucket(name string) bool {
	_, err := s.o.DB.Get(bucketBuckets, name)
	return err == nil
}

// ListBuckets lists every bucket by name.
func (s *Store) ListBuckets() ([]Bucket, error) {
	var out []Bucket
	err := s.o.DB.ForEach(bucketBuckets, "", func(_ string, v []byte) error {
		var b Bucket
		if err := json.Unmarshal(v, &b); err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list buckets: %w", err)
	}
	return out, nil
}

// writeTemp copies r (at most limit bytes) into a new temporary file and
// returns its path, size and MD5.
func (s *Store) writeTemp(r io.Reader, limit int64) (path string, size int64, sum []byte, err error) {
	f, err := os.CreateTemp(filepath.Join(s.o.Dir, "tmp"), "put-*")
	if err != nil {
		return "", 0, nil, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit+1))
	if err != nil {
		return "", 0, nil, err
	}
	if n > limit {
		return "", 0, nil, ErrTooLarge
	}
	if err := f.Sync(); err != nil {
		return "", 0, nil, err
	}
	if err := f.Close(); err != nil {
		return "", 0, nil, err
	}
	return f.Name(), n, h.Sum(nil), nil
}

func fileName(bucket, key string) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	sum := sha256.Sum256([]byte(objectID(bucket, key)))
	return hex.EncodeToString(sum[:12]) + "-" + hex.EncodeToString(rnd[:])
}

// Put stores the object read from r, replacing any previous one. The
// bucket is created if it does not exist.
func (s *Store) Put(bucket, key, contentType string, r io.Reader) (Object, error) {
	if !ValidBucketName(bucket) || !validKey(key) {
		return Object{}, fmt.Errorf("put %s/%s: %w: bad bucket name or key", bucket, key, ErrInvalid)
	}
	tmp, size, sum, err := s.writeTemp(r, s.o.MaxObjectBytes)
	if err != nil {
		return Object{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return s.commit(bucket, key, contentType, tmp, size, `"`+hex.EncodeToString(sum)+`"`)
}

// commit moves a finished temporary file into place and records it.
func (s *Store) commit(bucket, key, contentType, tmp string, size int64, etag string) (Object, error) {
	if contentType == "" {
		contentType = "binary/octet-stream"
	}
	obj := Object{Bucket: bucket, Key: key, Size: size, ETag: etag, ContentType: contentType,
		LastModified: s.o.Now().UTC().Truncate(time.Second), File: fileName(bucket, key)}
	if err := os.Rename(tmp, filepath.Join(s.o.Dir, "objects", obj.File)); err != nil {
		_ = os.Remove(tmp)
		return Object{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.createBucketLocked(bucket); err != nil {
		return Object{}, err
	}
	old, oldErr := s.head(bucket, key)
	b, _ := json.Marshal(obj)
	if err := s.o.DB.Put(bucketObjects, objectID(bucket, key), b); err != nil {
		_ = os.Remove(filepath.Join(s.o.Dir, "objects", obj.File))
		return Object{}, fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	if oldErr == nil {
		_ = os.Remove(filepath.Join(s.o.Dir, "objects", old.File))
	}
	return obj, nil
}

func (s *Store) head(bucket, key string) (Object, error) {
	var obj Object
	b, err := s.o.DB.Get(bucketObjects, objectID(bucket, key))
	if errors.Is(err, store.ErrNotFound) {
		if !s.HasBucket(bucket) {
			return obj, fmt.Errorf("%s/%s: %w", bucket, key, ErrNoSuchBucket)
		}
		return obj, fmt.Errorf("%s/%s: %w", bucket, key, ErrNoSuchKey)
	}
	if err != nil {
		return obj, err
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return obj, fmt.Errorf("%s/%s: decode metadata: %w", bucket, key, err)
	}
	return obj, nil
}

// Head returns an object's metadata.
func (s *Store) Head(bucket, key string) (Object, error) {
	obj, err := s.head(bucket, key)
	if err != nil {
		return obj, fmt.Errorf("head %w", err)
	}
	return obj, nil
}

// Open opens an object's body. The caller closes it. An object replaced
// meanwhile keeps its old body readable until closed (POSIX unlink).
func (s *Store) Open(bucket, key string) (*os.File, Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, err := s.head(bucket, key)
	if err != nil {
		return nil, obj, fmt.Errorf("open %w", err)
	}
	f, err := os.Open(filepath.Join(s.o.Dir, "objects", obj.File))
	if err != nil {
		return nil, obj, fmt.Errorf("open %s/%s: %w", bucket, key, err)
	}
	return f, obj, nil
}

// Get reads a whole object of at most limit bytes (ErrTooLarge beyond).
func (s *Store) Get(bucket, key string, limit int64) ([]byte, error) {
	f, obj, err := s.Open(bucket, key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if obj.Size > limit {
		return nil, fmt.Errorf("get %s/%s: %d bytes: %w", bucket, key, obj.Size, ErrTooLarge)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", bucket, key, err)
	}
	return b, nil
}

// Delete removes an object; an absent one is not an error (as in S3).
func (s *Store) Delete(bucket, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, err := s.head(bucket, key)
	if errors.Is(err, ErrNoSuchKey) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %w", err)
	}
	if err := s.o.DB.Delete(bucketObjects, objectID(bucket, key)); err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	_ = os.Remove(filepath.Join(s.o.Dir, "objects", obj.File))
	return nil
}

// List lists a bucket's objects whose keys start with prefix, in key order,
// at most max of them after the key startAfter.
func (s *Store) List(bucket, prefix, startAfter string, max int) (objs []Object, truncated bool, err error) {
	if !s.HasBucket(bucket) {
		return nil, false, fmt.Errorf("list %s: %w", bucket, ErrNoSuchBucket)
	}
	errStop := errors.New("stop")
	err = s.o.DB.ForEach(bucketObjects, objectID(bucket, prefix), func(k string, v []byte) error {
		if k <= objectID(bucket, startAfter) && startAfter != "" {
			return nil
		}
		if len(objs) == max {
			truncated = true
			return errStop
		}
		var o Object
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		objs = append(objs, o)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, false, fmt.Errorf("list %s: %w", bucket, err)
	}
	return objs, truncated, nil
}

// CreateMultipartUpload starts a multipart upload and returns its id.
func (s *Store) CreateMultipartUpload(bucket, key, contentType string) (string, error) {
	if !ValidBucketName(bucket) || !validKey(key) {
		return "", fmt.Errorf("create multipart upload %s/%s: %w: bad bucket name or key", bucket, key, ErrInvalid)
	}
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	u := upload{ID: hex.EncodeToString(rnd[:]), Bucket: bucket, Key: key, ContentType: contentType,
		Parts: map[int]partInfo{}, Initiated: s.o.Now().UTC()}
	b, _ := json.Marshal(u)
	if err := s.o.DB.Put(bucketUploads, u.ID, b); err != nil {
		return "", fmt.Errorf("create multipart upload %s/%s: %w", bucket, key, err)
	}
	return u.ID, nil
}

func (s *Store) getUpload(bucket, key, id string) (upload, error) {
	var u upload
	b, err := s.o.DB.Get(bucketUploads, id)
	if errors.Is(err, store.ErrNotFound) {
		return u, fmt.Errorf("upload %s: %w", id, ErrNoSuchUpload)
	}
	if err != nil {
		return u, err
	}
	if err := json.Unmarshal(b, &u); err != nil {
		return u, fmt.Errorf("upload %s: %w", id, err)
	}
	if u.Bucket != bucket || u.Key != key {
		return u, fmt.Errorf("upload %s: %w", id, ErrNoSuchUpload)
	}
	return u, nil
}

// UploadPart stores part number n (1-10000) of an upload and returns its ETag.
func (s *Store) UploadPart(bucket, key, id string, n int, r io.Reader) (string, error) {
	if n < 1 || n > 10000 {
		return "", fmt.Errorf("upload part %d: %w: part numbers are 1-10000", n, ErrInvalid)
	}
	if _, err := s.getUpload(bucket, key, id); err != nil {
		return "", err
	}
	tmp, size, sum, err := s.writeTemp(r, s.o.MaxObjectBytes)
	if err != nil {
		return "", fmt.Errorf("upload part %d: %w", n, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.getUpload(bucket, key, id)
	if err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	if old, ok := u.Parts[n]; ok {
		_ = os.Remove(filepath.Join(s.o.Dir, "tmp", old.File))
	}
	u.Parts[n] = partInfo{File: filepath.Base(tmp), Size: size, MD5: hex.EncodeToString(sum)}
	b, _ := json.Marshal(u)
	if err := s.o.DB.Put(bucketUploads, id, b); err != nil {
		return "", fmt.Errorf("upload part %d: %w", n, err)
	}
	return `"` + u.Parts[n].MD5 + `"`, nil
}

// CompletedPart names one part in CompleteMultipartUpload.
type CompletedPart struct {
	PartNumber int
	ETag       string
}

// CompleteMultipartUpload joins the parts, in the order given (ascending
// part numbers), into the object.
func (s *Store) CompleteMultipartUpload(bucket, key, id string, parts []CompletedPart) (Object, error) {
	u, err := s.getUpload(bucket, key, id)
	if err != nil {
		return Object{}, err
	}
	if len(parts) == 0 {
		return Object{}, fmt.Errorf("complete upload %s: %w: no parts", id, ErrInvalid)
	}
	if !slices.IsSortedFunc(parts, func(a, b CompletedPart) int { return a.PartNumber - b.PartNumber }) {
		return Object{}, fmt.Errorf("complete upload %s: %w: parts must be in ascending order", id, ErrInvalid)
	}
	f, err := os.CreateTemp(filepath.Join(s.o.Dir, "tmp"), "mpu-*")
	if err != nil {
		return Object{}, fmt.Errorf("complete upload %s: %w", id, err)
	}
	var size int64
	etagSum := md5.New()
	for _, p := range parts {
		pi, ok := u.Parts[p.PartNumber]
		if !ok || strings.Trim(p.ETag, `"`) != pi.MD5 {
			f.Close()
			_ = os.Remove(f.Name())
			return Object{}, fmt.Errorf("complete upload %s: %w: part %d is not uploaded or its ETag differs", id, ErrInvalid, p.PartNumber)
		}
		pf, err := os.Open(filepath.Join(s.o.Dir, "tmp", pi.File))
		if err == nil {
			var n int64
			n, err = io.Copy(f, pf)
			size += n
			if err == nil && size > s.o.MaxObjectBytes {
				err = ErrTooLarge
			}
			pf.Close()
		}
		if err != nil {
			f.Close()
			_ = os.Remove(f.Name())
			return Object{}, fmt.Errorf("complete upload %s: %w", id, err)
		}
		raw, _ := hex.DecodeString(pi.MD5)
		etagSum.Write(raw)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return Object{}, fmt.Errorf("complete upload %s: %w", id, err)
	}
	obj, err := s.commit(bucket, key, u.ContentType, f.Name(), size,
		`"`+hex.EncodeToString(etagSum.Sum(nil))+"-"+strconv.Itoa(len(parts))+`"`)
	if err != nil {
		return obj, err
	}
	return obj, s.AbortMultipartUpload(bucket, key, id)
}

// AbortMultipartUpload discards an upload and its parts.
func (s *Store) AbortMultipartUpload(bucket, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, err := s.getUpload(bucket, key, id)
	if err != nil {
		return err
	}
	for _, p := range u.Parts {
		_ = os.Remove(filepath.Join(s.o.Dir, "tmp", p.File))
	}
	if err := s.o.DB.Delete(bucketUploads, id); err != nil {
		return fmt.Errorf("abort upload %s: %w", id, err)
	}
	return nil
}
