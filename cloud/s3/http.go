package s3

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Mount returns a handler that serves the store for requests under /s3/
// and for requests SigV4-signed (header or query) for service "s3", and
// passes every other request to next.
func (s *Store) Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if p == "/s3" || strings.HasPrefix(p, "/s3/") {
			s.serve(w, r, strings.TrimPrefix(p, "/s3"))
			return
		}
		if SignedForS3(r) {
			s.serve(w, r, p)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// SignedForS3 reports whether r's SigV4 credential scope (Authorization
// header or X-Amz-Credential query) names service s3.
func SignedForS3(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		_, cred, ok := strings.Cut(h, "Credential=")
		if !ok {
			return false
		}
		cred, _, _ = strings.Cut(cred, ",")
		return strings.HasSuffix(strings.TrimSpace(cred), "/s3/aws4_request")
	}
	return strings.HasSuffix(r.URL.Query().Get("X-Amz-Credential"), "/s3/aws4_request")
}

// Handler serves the store at the root of its URL space.
func (s *Store) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, r.URL.EscapedPath()) })
}

// s3Error is S3's XML error document.
type s3Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string   `xml:"Code"`
	Message   string   `xml:"Message"`
	Resource  string   `xml:"Resource,omitempty"`
	RequestID string   `xml:"RequestId"`
	status    int
}

func (e *s3Error) Error() string { return e.Code + ": " + e.Message }

func newErr(status int, code, msg string) *s3Error {
	return &s3Error{status: status, Code: code, Message: msg}
}

// toS3Error maps the store's errors to S3's codes.
func toS3Error(err error) *s3Error {
	var e *s3Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrNoSuchBucket):
		return newErr(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
	case errors.Is(err, ErrNoSuchKey):
		return newErr(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	case errors.Is(err, ErrNoSuchUpload):
		return newErr(http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist.")
	case errors.Is(err, ErrTooLarge):
		return newErr(http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
	case errors.Is(err, errContentSHA256):
		return newErr(http.StatusBadRequest, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.")
	case errors.Is(err, ErrExpired):
		return newErr(http.StatusForbidden, "AccessDenied", "Request has expired")
	case errors.Is(err, ErrBadSignature):
		return newErr(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
	case errors.Is(err, errChunked):
		return newErr(http.StatusBadRequest, "IncompleteBody", err.Error())
	case errors.Is(err, ErrInvalid):
		return newErr(http.StatusBadRequest, "InvalidArgument", strings.TrimPrefix(err.Error(), "s3: "))
	}
	return newErr(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
}

func writeErr(w http.ResponseWriter, r *http.Request, err error, resource string) {
	e := toS3Error(err)
	e.Resource, e.RequestID = resource, w.Header().Get("x-amz-request-id")
	if r.Method == http.MethodHead {
		w.WriteHeader(e.status)
		return
	}
	b, _ := xml.Marshal(e)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(e.status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

func writeXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// serve handles one request whose store path (after any /s3 prefix) is
// escapedPath: "/", "/BUCKET" or "/BUCKET/KEY".
func (s *Store) serve(w http.ResponseWriter, r *http.Request, escapedPath string) {
	w.Header().Set("x-amz-request-id", requestID())
	w.Header().Set("Server", "iotsim")
	rest := strings.TrimPrefix(escapedPath, "/")
	bucket, rawKey, _ := strings.Cut(rest, "/")
	key, err := url.PathUnescape(rawKey)
	if err != nil {
		writeErr(w, r, newErr(http.StatusBadRequest, "InvalidURI", "Couldn't parse the specified URI."), escapedPath)
		return
	}
	q := r.URL.Query()
	if err := s.authenticate(r); err != nil {
		writeErr(w, r, err, escapedPath)
		return
	}
	switch {
	case bucket == "":
		if r.Method != http.MethodGet {
			writeErr(w, r, newErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource."), "/")
			return
		}
		s.listBuckets(w, r)
	case key == "":
		s.serveBucket(w, r, bucket, q)
	default:
		s.serveObject(w, r, bucket, key, q)
	}
}

func (s *Store) listBuckets(w http.ResponseWriter, r *http.Request) {
	bs, err := s.ListBuckets()
	if err != nil {
		writeErr(w, r, err, "/")
		return
	}
	type xb struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
	}
	out := struct {
		XMLName xml.Name `xml:"ListAllMyBucketsResult"`
		Owner   struct {
			ID          string `xml:"ID"`
			DisplayName string `xml:"DisplayName"`
		} `xml:"Owner"`
		Buckets []xb `xml:"Buckets>Bucket"`
	}{}
	out.Owner.ID, out.Owner.DisplayName = "iotsim", "iotsim"
	for _, b := range bs {
		out.Buckets = append(out.Buckets, xb{b.Name, b.CreationDate.Format(time.RFC3339)})
	}
	writeXML(w, out)
}

func (s *Store) serveBucket(w http.ResponseWriter, r *http.Request, bucket string, q url.Values) {
	res := "/" + bucket
	switch r.Method {
	case http.MethodPut:
		if err := s.CreateBucket(bucket); err != nil {
			writeErr(w, r, newErr(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid."), res)
			return
		}
		w.Header().Set("Location", "/"+bucket)
		w.WriteHeader(http.StatusOK)
	case http.MethodHead:
		if !s.HasBucket(bucket) {
			writeErr(w, r, ErrNoSuchBucket, res)
			return
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		s.listObjects(w, r, bucket, q)
	default:
		writeErr(w, r, newErr(http.StatusNotImplemented, "NotImplemented", "iotsim's S3 does not implement this bucket operation."), res)
	}
}

func (s *Store) listObjects(w http.ResponseWriter, r *http.Request, bucket string, q url.Values) {
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeErr(w, r, newErr(http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer"), "/"+bucket)
			return
		}
		maxKeys = min(n, 1000)
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	after := q.Get("start-after")
	if t := q.Get("continuation-token"); t != "" {
		b, err := hex.DecodeString(t)
		if err != nil {
			writeErr(w, r, newErr(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect"), "/"+bucket)
			return
		}
		after = string(b)
	} else if m := q.Get("marker"); m != "" {
		after = m
	}
	type content struct {
		Key          string `xml:"Key"`
		LastModified string `xml:"LastModified"`
		ETag         string `xml:"ETag"`
		Size         int64  `xml:"Size"`
		StorageClass string `xml:"StorageClass"`
	}
	type cp struct {
		Prefix string `xml:"Prefix"`
	}
	out := struct {
		XMLName               xml.Name  `xml:"ListBucketResult"`
		Name                  string    `xml:"Name"`
		Prefix                string    `xml:"Prefix"`
		Delimiter             string    `xml:"Delimiter,omitempty"`
		MaxKeys               int       `xml:"MaxKeys"`
		KeyCount              int       `xml:"KeyCount"`
		IsTruncated           bool      `xml:"IsTruncated"`
		NextContinuationToken string    `xml:"NextContinuationToken,omitempty"`
		Contents              []content `xml:"Contents"`
		CommonPrefixes        []cp      `xml:"CommonPrefixes"`
	}{Name: bucket, Prefix: prefix, Delimiter: delim, MaxKeys: maxKeys}
	objs, _, err := s.List(bucket, prefix, after, 1<<30)
	if err != nil {
		writeErr(w, r, err, "/"+bucket)
		return
	}
	last := after
	for _, o := range objs {
		p := ""
		if delim != "" {
			if i := strings.Index(o.Key[len(prefix):], delim); i >= 0 {
				p = o.Key[:len(prefix)+i+len(delim)]
			}
		}
		if p != "" && len(out.CommonPrefixes) > 0 && out.CommonPrefixes[len(out.CommonPrefixes)-1].Prefix == p {
			last = o.Key // same group: consumed with it
			continue
		}
		if out.KeyCount == maxKeys {
			out.IsTruncated = true
			out.NextContinuationToken = hex.EncodeToString([]byte(last))
			break
		}
		last = o.Key
		out.KeyCount++
		if p != "" {
			out.CommonPrefixes = append(out.CommonPrefixes, cp{p})
			continue
		}
		out.Contents = append(out.Contents, content{o.Key, o.LastModified.Format("2006-01-02T15:04:05.000Z"), o.ETag, o.Size, "STANDARD"})
	}
	writeXML(w, out)
}

// body returns the request body, decoding aws-chunked uploads.
func body(r *http.Request) io.Reader {
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") ||
		strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		return newChunkedReader(r.Body)
	}
	return r.Body
}

func (s *Store) serveObject(w http.ResponseWriter, r *http.Request, bucket, key string, q url.Values) {
	res := "/" + bucket + "/" + key
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.getObject(w, r, bucket, key)
	case http.MethodPut:
		if r.Header.Get("X-Amz-Copy-Source") != "" {
			writeErr(w, r, newErr(http.StatusNotImplemented, "NotImplemented", "iotsim's S3 does not implement CopyObject."), res)
			return
		}
		if q.Has("uploadId") {
			n, err := strconv.Atoi(q.Get("partNumber"))
			if err != nil {
				writeErr(w, r, newErr(http.StatusBadRequest, "InvalidArgument", "partNumber must be an integer"), res)
				return
			}
			etag, err := s.UploadPart(bucket, key, q.Get("uploadId"), n, body(r))
			if err != nil {
				writeErr(w, r, err, res)
				return
			}
			w.Header().Set("ETag", etag)
			w.WriteHeader(http.StatusOK)
			return
		}
		if r.ContentLength > s.o.MaxObjectBytes {
			writeErr(w, r, ErrTooLarge, res)
			return
		}
		obj, err := s.Put(bucket, key, r.Header.Get("Content-Type"), body(r))
		if err != nil {
			writeErr(w, r, err, res)
			return
		}
		w.Header().Set("ETag", obj.ETag)
		w.WriteHeader(http.StatusOK)
	case http.MethodPost:
		switch {
		case q.Has("uploads"):
			id, err := s.CreateMultipartUpload(bucket, key, r.Header.Get("Content-Type"))
			if err != nil {
				writeErr(w, r, err, res)
				return
			}
			writeXML(w, struct {
				XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
				Bucket   string   `xml:"Bucket"`
				Key      string   `xml:"Key"`
				UploadID string   `xml:"UploadId"`
			}{Bucket: bucket, Key: key, UploadID: id})
		case q.Has("uploadId"):
			parts, err := parseCompleteUpload(io.LimitReader(r.Body, 1<<20))
			if err != nil {
				writeErr(w, r, err, res)
				return
			}
			obj, err := s.CompleteMultipartUpload(bucket, key, q.Get("uploadId"), parts)
			if err != nil {
				writeErr(w, r, err, res)
				return
			}
			writeXML(w, struct {
				XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
				Location string   `xml:"Location"`
				Bucket   string   `xml:"Bucket"`
				Key      string   `xml:"Key"`
				ETag     string   `xml:"ETag"`
			}{Location: res, Bucket: bucket, Key: key, ETag: obj.ETag})
		default:
			writeErr(w, r, newErr(http.StatusNotImplemented, "NotImplemented", "iotsim's S3 does not implement this POST."), res)
		}
	case http.MethodDelete:
		var err error
		if q.Has("uploadId") {
			err = s.AbortMultipartUpload(bucket, key, q.Get("uploadId"))
		} else {
			err = s.Delete(bucket, key)
		}
		if err != nil {
			writeErr(w, r, err, res)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeErr(w, r, newErr(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource."), res)
	}
}

// parseCompleteUpload parses a CompleteMultipartUpload request body.
func parseCompleteUpload(r io.Reader) ([]CompletedPart, error) {
	var in struct {
		Parts []struct {
			PartNumber int    `xml:"PartNumber"`
			ETag       string `xml:"ETag"`
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(r).Decode(&in); err != nil {
		return nil, newErr(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
	}
	out := make([]CompletedPart, 0, len(in.Parts))
	for _, p := range in.Parts {
		out = append(out, CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag})
	}
	return out, nil
}

// getObject serves GET and HEAD of an object, with a single byte Range.
func (s *Store) getObject(w http.ResponseWriter, r *http.Request, bucket, key string) {
	res := "/" + bucket + "/" + key
	f, obj, err := s.Open(bucket, key)
	if err != nil {
		writeErr(w, r, err, res)
		return
	}
	defer f.Close()
	h := w.Header()
	h.Set("ETag", obj.ETag)
	h.Set("Last-Modified", obj.LastModified.Format(http.TimeFormat))
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", obj.ContentType)
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != obj.ETag {
		writeErr(w, r, newErr(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold"), res)
		return
	}
	start, end, ranged, err := parseRange(r.Header.Get("Range"), obj.Size)
	if ir := r.Header.Get("If-Range"); ir != "" && ir != obj.ETag {
		ranged, err = false, nil // the object changed: send it whole
	}
	if err != nil {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(obj.Size, 10))
		writeErr(w, r, newErr(http.StatusRequestedRangeNotSatisfiable, "InvalidRange", "The requested range is not satisfiable"), res)
		return
	}
	status, n := http.StatusOK, obj.Size
	if ranged {
		status, n = http.StatusPartialContent, end-start+1
		h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end, 10)+"/"+strconv.FormatInt(obj.Size, 10))
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = io.Copy(w, io.NewSectionReader(f, start, n))
}
