package broker

import (
	"errors"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true},
		{"a/+", "a", false},
		{"a/+", "a/b/c", false},
		{"a/#", "a/b/c", true},
		{"a/#", "a/", true},
		{"a/#", "a", false}, // AWS: '#' does not match the parent
		{"#", "a", true},
		{"#", "a/b", true},
		{"#", "$aws/things/x", false},
		{"+/x", "$aws/x", false},
		{"$aws/things/+/shadow/get/+", "$aws/things/T/shadow/get/accepted", true},
		{"$aws/things/+/shadow/get/+", "$aws/things/T/shadow/get", false},
		{"+/+", "a/b", true},
		{"+", "a/b", false},
		{"a/b/c", "a/b", false},
		{"", "a", false},
		{"a", "", false},
		{"/", "/", true},
		{"+/+", "/", true},
	} {
		if got := Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func TestCheckTopicName(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"a/b", true},
		{strings.Repeat("x", 256), true},
		{strings.Repeat("x", 257), false},
		{"1/2/3/4/5/6/7/8", true},
		{"1/2/3/4/5/6/7/8/9", false},
		{"$aws/rules/r/1/2/3/4/5/6/7/8", true}, // Basic Ingest prefix not counted
		{"$aws/rules/r/1/2/3/4/5/6/7/8/9", false},
		{"a/+", false},
		{"a/#", false},
		{"", false},
		{"a\x00b", false},
		{"\xff", false},
	} {
		err := CheckTopicName(tc.topic)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrTopicInvalid)) {
			t.Errorf("CheckTopicName(%.40q) = %v, want ok=%v", tc.topic, err, tc.ok)
		}
	}
}

func TestCheckFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"a/b", true},
		{"a/+/c", true},
		{"a/#", true},
		{"#", true},
		{"+", true},
		{"a/#/c", false},
		{"a/b#", false},
		{"a+/b", false},
		{"", false},
		{"1/2/3/4/5/6/7/8", true},
		{"1/2/3/4/5/6/7/8/9", false},
		{strings.Repeat("x", 257), false},
		{"$share/g/a/+", true},
		{"$share/g", false},
		{"$share//a", false},
		{"$share/g+/a", false},
	} {
		err := CheckFilter(tc.filter)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrFilterInvalid)) {
			t.Errorf("CheckFilter(%.40q) = %v, want ok=%v", tc.filter, err, tc.ok)
		}
	}
}

func TestClampKeepAlive(t *testing.T) {
	for in, want := range map[uint16]uint16{0: 1200, 1: 30, 29: 30, 30: 30, 60: 60, 1200: 1200, 1201: 1200, 65535: 1200} {
		if got := clampKeepAlive(in); got != want {
			t.Errorf("clampKeepAlive(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestThingScoped(t *testing.T) {
	p := &Principal{ClientID: "T", ThingName: "T"}
	none := &Principal{ClientID: "X"}
	var a ThingScoped
	if err := a.Connect(p); err != nil {
		t.Errorf("Connect attached: %v", err)
	}
	if err := a.Connect(none); !errors.Is(err, ErrNotAuthorized) {
		t.Errorf("Connect unattached: %v, want ErrNotAuthorized", err)
	}
	for _, tc := range []struct {
		s                 string
		pub, sub, receive bool
	}{
		{"telemetry/T", true, true, true},
		{"alarms/T/x", true, true, true},
		{"T", true, true, true},
		{"telemetry/U", false, false, false},
		{"telemetry/TT", false, false, false},
		{"$aws/things/T/shadow/update", true, true, true},
		{"$aws/things/U/shadow/update", false, false, false},
		{"$aws/things/T", false, false, false},
		{"$aws/events/presence/connected/T", false, false, false},
		{"$aws/things/T/shadow/get/+", false, true, false},
		{"$aws/things/+/shadow/get", false, false, false},
		{"telemetry/T/#", false, true, false},
		{"+/T", false, true, false},
		{"#", false, false, false},
		{"+/x", false, false, false},
		{"telemetry/+", false, false, false},
		{"$share/g/telemetry/T", false, true, false},
	} {
		if got := a.Publish(p, tc.s, false); got != tc.pub && !strings.ContainsAny(tc.s, "+#") {
			t.Errorf("Publish(%q) = %v, want %v", tc.s, got, tc.pub)
		}
		if got := a.Subscribe(p, tc.s); got != tc.sub {
			t.Errorf("Subscribe(%q) = %v, want %v", tc.s, got, tc.sub)
		}
		if got := a.Receive(p, tc.s); got != tc.receive && !strings.ContainsAny(tc.s, "+#") {
			t.Errorf("Receive(%q) = %v, want %v", tc.s, got, tc.receive)
		}
		if a.Publish(none, tc.s, false) || a.Subscribe(none, tc.s) || a.Receive(none, tc.s) {
			t.Errorf("principal without thing allowed %q", tc.s)
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"a/#", "a"}, {"+/+", "/"}, {"$aws/+", "$aws/x"}, {"#", "$x"}, {"a//b", "a//b"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := Match(filter, topic)
		if CheckTopicName(topic) == nil && !strings.HasPrefix(topic, "$") && filter == topic && !got {
			t.Fatalf("topic %q does not match itself", topic)
		}
		if got && CheckFilter(filter) == nil && CheckTopicName(topic) == nil && !hasWildcard(filter) && filter != topic {
			t.Fatalf("literal filter %q matched different topic %q", filter, topic)
		}
	})
}

func FuzzCheckFilter(f *testing.F) {
	for _, s := range []string{"a/#", "$share/g/a/+", "#/a", "a/b+", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		if err := CheckFilter(filter); err == nil {
			// A valid filter matches the topic obtained by replacing wildcards.
			inner := innerFilter(filter)
			topic := strings.NewReplacer("+", "x", "#", "x").Replace(inner)
			if CheckTopicName(topic) == nil && !strings.HasPrefix(topic, "$") && !Match(inner, topic) {
				t.Fatalf("filter %q does not match %q", inner, topic)
			}
		}
		_ = CheckTopicName(filter)
	})
}
