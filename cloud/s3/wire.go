package s3

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// errUnsatisfiable: a Range that selects no byte of the object (416).
var errUnsatisfiable = errors.New("s3: range not satisfiable")

// parseRange interprets a Range header for an object of size bytes. It
// returns ok=false when the whole object is to be sent: no header, a
// header that is not a single well-formed bytes range (S3 serves no
// multi-range), as RFC 9110 says to ignore those. It returns
// errUnsatisfiable when the range starts past the end.
func parseRange(h string, size int64) (start, end int64, ok bool, err error) {
	spec, found := strings.CutPrefix(strings.TrimSpace(h), "bytes=")
	if !found || strings.Contains(spec, ",") {
		return 0, 0, false, nil
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false, nil
	}
	num := func(s string) (int64, bool) {
		if s == "" || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	if first == "" { // suffix: the last n bytes
		n, valid := num(last)
		if !valid {
			return 0, 0, false, nil
		}
		if n == 0 || size == 0 {
			return 0, 0, false, errUnsatisfiable
		}
		return max(size-n, 0), size - 1, true, nil
	}
	a, valid := num(first)
	if !valid {
		return 0, 0, false, nil
	}
	b := size - 1
	if last != "" {
		if b, valid = num(last); !valid || b < a {
			return 0, 0, false, nil
		}
	}
	if a >= size {
		return 0, 0, false, errUnsatisfiable
	}
	return a, min(b, size-1), true, nil
}

// chunkedReader decodes an aws-chunked body (SigV4 streaming upload):
// "hex-size[;chunk-signature=...]\r\n" data "\r\n" ..., a zero-size chunk,
// optional trailer lines and a blank line. Signatures are not checked.
type chunkedReader struct {
	r    *bufio.Reader
	left int64 // bytes left in the current chunk
	done bool
	err  error
}

func newChunkedReader(r io.Reader) *chunkedReader {
	return &chunkedReader{r: bufio.NewReaderSize(r, 4096)}
}

// maxChunkLine bounds a chunk header or trailer line.
const maxChunkLine = 4096

var errChunked = errors.New("s3: malformed aws-chunked body")

func (c *chunkedReader) line() (string, error) {
	var b []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > maxChunkLine {
			return "", fmt.Errorf("%w: line too long", errChunked)
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w: truncated", errChunked)
		}
		return "", err
	}
	s, ok := strings.CutSuffix(string(b), "\r\n")
	if !ok {
		return "", fmt.Errorf("%w: line not ended by CRLF", errChunked)
	}
	return s, nil
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		hdr, err := c.line()
		if err != nil {
			c.err = err
			return 0, err
		}
		sz, _, _ := strings.Cut(hdr, ";")
		n, err := strconv.ParseInt(strings.TrimSpace(sz), 16, 64)
		if err != nil || n < 0 || len(sz) > 16 {
			c.err = fmt.Errorf("%w: bad chunk size %q", errChunked, truncate(sz, 20))
			return 0, c.err
		}
		if n == 0 {
			for { // trailers up to the blank line
				l, err := c.line()
				if err != nil {
					c.err = err
					return 0, err
				}
				if l == "" {
					break
				}
			}
			c.done = true
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		var crlf [2]byte
		if _, err := io.ReadFull(c.r, crlf[:]); err != nil || crlf != [2]byte{'\r', '\n'} {
			c.err = fmt.Errorf("%w: chunk data not followed by CRLF", errChunked)
			return n, nil
		}
	}
	if errors.Is(err, io.EOF) {
		c.err = fmt.Errorf("%w: truncated", errChunked)
		return n, nil
	}
	return n, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
