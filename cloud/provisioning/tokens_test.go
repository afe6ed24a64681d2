package provisioning

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTokensSweepSpacing: expired scans the table at most once per
// sweepEvery, and then finds everything that expired meanwhile.
func TestTokensSweepSpacing(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var ts tokens
	ts.add("a", &token{certID: "cert-a", issued: t0})
	now := t0.Add(TokenLifetime)
	steps := []struct {
		name string
		add  string // a token issued TokenLifetime before now
		at   time.Time
		want []string
	}{
		{name: "first scan", at: now, want: []string{"cert-a"}},
		{name: "within a minute", add: "b", at: now.Add(sweepEvery - time.Second), want: nil},
		{name: "a minute later", at: now.Add(sweepEvery), want: []string{"cert-b"}},
		{name: "clock set back: scans", add: "c", at: now.Add(-time.Hour), want: []string{"cert-c"}},
		{name: "after the set back", add: "d", at: now.Add(-time.Hour + time.Second), want: nil},
	}
	for _, st := range steps {
		if st.add != "" {
			ts.add(st.add, &token{certID: "cert-" + st.add, issued: st.at.Add(-TokenLifetime)})
		}
		if diff := cmp.Diff(st.want, ts.expired(st.at)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
}
