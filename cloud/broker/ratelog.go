package broker

import (
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// What a peer sends ends up in log records (client ids, topics, filters,
// reasons); these bound what one record and one second of records can cost,
// whatever the peer sends.
const (
	// maxLogField is the most bytes of one peer-supplied field that are
	// logged; longer values are cut and marked (see logField).
	maxLogField = 160
	// logBurst records of one kind are written per logWindow; the rest
	// are counted and the next record written reports them as suppressed.
	logBurst  = 10
	logWindow = time.Second
)

// logField returns s cut to at most maxLogField bytes (on a rune boundary)
// with a marker saying how long it was, so that a 60 KB client id costs a
// log record no more than a normal one.
func logField(s string) string {
	if len(s) <= maxLogField {
		return s
	}
	cut := maxLogField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[truncated, " + strconv.Itoa(len(s)) + " bytes]"
}

// sampler lets logBurst records through per logWindow and counts the others.
type sampler struct {
	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int64
}

// allow reports whether a record may be written now and, if so, how many
// were suppressed since the last one written.
func (s *sampler) allow(now time.Time) (bool, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.start) >= logWindow || now.Before(s.start) {
		s.start, s.n = now, 0
	}
	if s.n >= logBurst {
		s.suppressed++
		return false, 0
	}
	s.n++
	sup := s.suppressed
	s.suppressed = 0
	return true, sup
}
