package console

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotagent/iotagent/cloud/broker"
	"github.com/iotagent/iotagent/cloud/defender"
	"github.com/iotagent/iotagent/cloud/jobs"
	"github.com/iotagent/iotagent/cloud/registry"
	"github.com/iotagent/iotagent/cloud/rules"
	"github.com/iotagent/iotagent/cloud/shadow"
)

// TestSlowViewerDropsNotBlocks: a viewer that reads nothing costs the
// publisher nothing: past its buffer, messages are dropped and counted,
// for it and for the console, and a viewer that reads keeps getting its
// own.
func TestSlowViewerDropsNotBlocks(t *testing.T) {
	h := hub{buffer: 4}
	slow := h.add([]string{"alarms/#"})
	other := h.add([]string{"telemetry/+"})
	for i := range 10 {
		h.publish("alarms/box", []byte{byte('0' + i)})
	}
	h.publish("telemetry/box", []byte("t"))
	h.publish("$aws/things/box/shadow/update", []byte("{}")) // matches neither
	if got := slow.dropped.Load(); got != 6 {
		t.Errorf("slow viewer dropped %d, want 6", got)
	}
	if got := h.dropped.Load(); got != 6 {
		t.Errorf("console dropped %d, want 6", got)
	}
	if len(slow.ch) != 4 || len(other.ch) != 1 || other.dropped.Load() != 0 {
		t.Errorf("queues %d and %d (other dropped %d), want 4 and 1, 0", len(slow.ch), len(other.ch), other.dropped.Load())
	}
	if m := <-slow.ch; m.Topic != "alarms/box" || m.Payload != "0" {
		t.Errorf("first queued message %+v, want the first published", m)
	}
	h.remove(slow)
	h.publish("alarms/box", []byte("after"))
	if h.dropped.Load() != 6 {
		t.Errorf("a removed viewer still counts drops")
	}
	select {
	case <-slow.done:
	default:
		t.Error("a removed viewer is not told to stop")
	}
}

// TestMessageEncoding: binary payloads go to the page as base64, long
// ones cut with the count of bytes left out.
func TestMessageEncoding(t *testing.T) {
	if m := newMessage("a", []byte{0xff, 0x00}); !m.Base64 || m.Payload != "/wA=" {
		t.Errorf("binary payload: %+v", m)
	}
	big := strings.Repeat("x", MaxShownPayload+10)
	if m := newMessage("a", []byte(big)); m.Truncated != 10 || len(m.Payload) != MaxShownPayload {
		t.Errorf("long payload: truncated %d, %d bytes shown", m.Truncated, len(m.Payload))
	}
}

func manyFilters(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "t/%d,", i)
	}
	return b.String()
}

func TestParseFilters(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "alarms/#", want: []string{"alarms/#"}},
		{in: " alarms/# \n notifications/+ ,$aws/things/box/shadow/#\r\n", want: []string{"alarms/#", "notifications/+", "$aws/things/box/shadow/#"}},
		{in: "a/b\na/b", want: []string{"a/b"}},
		{in: "", wantErr: "none given"},
		{in: " \n , ", wantErr: "none given"},
		{in: "a/#/b", wantErr: `"a/#/b"`},
		{in: "a/b+", wantErr: `"a/b+"`},
		{in: "$share/g/a", wantErr: "shared subscription"},
		{in: strings.Repeat("a/", 20) + "a", wantErr: "slashes"},
		{in: manyFilters(MaxFilters + 1), wantErr: "more than 16"},
	}
	for _, tt := range tests {
		got, err := ParseFilters(tt.in)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrFilters) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseFilters(%q) = %v, %v; want an error naming %s", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("ParseFilters(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzParseFilters: whatever is typed, ParseFilters returns an error or
// at most MaxFilters distinct, valid, trimmed filters that the broker's
// matcher takes without panicking.
func FuzzParseFilters(f *testing.F) {
	for _, s := range []string{"alarms/#", "a/+/c\nb/#", "$aws/things/+/shadow/#, x", "#", "+", "a//b", "\x00", "a/#/b", "$share/g/#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseFilters(in)
		if err != nil {
			if len(got) != 0 || !errors.Is(err, ErrFilters) {
				t.Fatalf("ParseFilters(%q) = %q, %v", in, got, err)
			}
			return
		}
		if len(got) == 0 || len(got) > MaxFilters {
			t.Fatalf("ParseFilters(%q) = %d filters", in, len(got))
		}
		seen := map[string]bool{}
		for _, f := range got {
			if f == "" || f != strings.TrimSpace(f) || strings.ContainsAny(f, ",\n\r") || seen[f] {
				t.Fatalf("ParseFilters(%q) gave %q", in, f)
			}
			seen[f] = true
			matchAny([]string{f}, "a/b")
			matchAny([]string{f}, "$aws/things/x/shadow/update")
		}
	})
}

// fakeTapper counts the broker taps and hands out the latest one's
// function.
type fakeTapper struct {
	mu   sync.Mutex
	taps int
	fn   broker.TapFunc
}

func (f *fakeTapper) Tap(_ string, fn broker.TapFunc) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.taps++
	f.fn = fn
	fn("retained/x", []byte("retained")) // what mochi does with a retained message
	return func() { f.mu.Lock(); f.taps--; f.mu.Unlock() }, nil
}

func (f *fakeTapper) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.taps
}

// TestTapOnlyWhileViewed: the broker is tapped while a live view is open,
// once however many are open, and not at all when none is (a console
// nobody looks at costs the publish path nothing); retained messages
// handed over at tap time are not shown.
func TestTapOnlyWhileViewed(t *testing.T) {
	ft := &fakeTapper{}
	c, err := New(Options{Token: "t0k3n", Broker: ft, Registry: &registry.Registry{}, Shadows: &shadow.Service{},
		Jobs: &jobs.Service{}, Defender: &defender.Service{}, Rules: &rules.Engine{}, Presence: NewPresence(nil)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	open := func(filter string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/api/stream?filter="+url.QueryEscape(filter), nil)
		req.Header.Set("Authorization", "Bearer t0k3n")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("open stream: %v %v", resp, err)
		}
		r := bufio.NewReader(resp.Body)
		if l, _ := r.ReadString('\n'); l != "event: ready\n" {
			t.Fatalf("first line %q, want the ready event", l)
		}
		return resp, r
	}
	if ft.open() != 0 {
		t.Fatal("tapped before any view")
	}
	a, ra := open("#")
	b, _ := open("alarms/#")
	if ft.open() != 1 {
		t.Errorf("%d taps with two views, want 1", ft.open())
	}
	ft.mu.Lock()
	fn := ft.fn
	ft.mu.Unlock()
	fn("alarms/box", []byte("motion"))
	for {
		l, err := ra.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(l, "retained") {
			t.Fatalf("a retained message was shown: %s", l)
		}
		if strings.HasPrefix(l, "data: ") && strings.Contains(l, `"topic":"alarms/box"`) {
			break
		}
	}
	a.Body.Close()
	b.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for ft.open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d taps after every view closed, want 0", ft.open())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/console/api/stream?filter=a", nil)
	req.Header.Set("Authorization", "Bearer t0k3n")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a view after Close: %v %v, want 503", resp.Status, err)
	}
}

// BenchmarkHubPublish is the cost a live view adds to a broker publish:
// a view whose filters do not match, and one that matches but has fallen
// behind (the message is dropped and counted).
func BenchmarkHubPublish(b *testing.B) {
	payload := []byte(`{"temperature_c":21.5,"humidity_pct":45}`)
	for _, bc := range []struct{ name, filter string }{{"no-match", "alarms/#"}, {"match-full", "telemetry/#"}} {
		b.Run(bc.name, func(b *testing.B) {
			h := hub{buffer: 1}
			h.add([]string{bc.filter, "$aws/things/+/shadow/#"})
			b.ReportAllocs()
			for b.Loop() {
				h.publish("telemetry/box-1", payload)
			}
		})
	}
}
