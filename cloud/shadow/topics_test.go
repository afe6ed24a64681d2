package shadow

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTopic(t *testing.T) {
	type parts struct {
		Thing, Name, Op string
		OK              bool
	}
	tests := []struct {
		topic string
		want  parts
	}{
		{"$aws/things/dev1/shadow/update", parts{"dev1", "", "update", true}},
		{"$aws/things/dev1/shadow/get", parts{"dev1", "", "get", true}},
		{"$aws/things/dev1/shadow/delete", parts{"dev1", "", "delete", true}},
		{"$aws/things/dev1/shadow/update/accepted", parts{"dev1", "", "update/accepted", true}},
		{"$aws/things/dev1/shadow/update/rejected", parts{"dev1", "", "update/rejected", true}},
		{"$aws/things/dev1/shadow/update/delta", parts{"dev1", "", "update/delta", true}},
		{"$aws/things/dev1/shadow/update/documents", parts{"dev1", "", "update/documents", true}},
		{"$aws/things/dev1/shadow/get/accepted", parts{"dev1", "", "get/accepted", true}},
		{"$aws/things/dev1/shadow/delete/rejected", parts{"dev1", "", "delete/rejected", true}},
		{"$aws/things/a:b_c-D9/shadow/name/$package/get/rejected", parts{"a:b_c-D9", "$package", "get/rejected", true}},
		{"$aws/things/dev1/shadow/name/cfg/update", parts{"dev1", "cfg", "update", true}},
		{"$aws/things/name/shadow/name/name/update", parts{"name", "name", "update", true}},
		{"$aws/things/dev1/shadow/update/", parts{}},
		{"$aws/things/dev1/shadow/upd", parts{}},
		{"$aws/things/dev1/shadow", parts{}},
		{"$aws/things/dev1/shadow/name/cfg", parts{}},
		{"$aws/things/dev1/shadow/name//update", parts{}},
		{"$aws/things//shadow/update", parts{}},
		{"$aws/things/dev1/jobs/get", parts{}},
		{"$aws/things/dev 1/shadow/update", parts{}},
		{"$aws/things/dev1/shadow/name/a b/update", parts{}},
		{"$aws/things/dev1/shadow/update/accepted/x", parts{}},
		{"$aws/things/dev1/Shadow/update", parts{}},
		{"$aws/things/dev1/shadow/UPDATE", parts{}},
		{"things/dev1/shadow/update", parts{}},
		{"$aws/things/" + strings.Repeat("t", 128) + "/shadow/get", parts{strings.Repeat("t", 128), "", "get", true}},
		{"$aws/things/" + strings.Repeat("t", 129) + "/shadow/get", parts{}},
		{"$aws/things/t/shadow/name/" + strings.Repeat("s", 64) + "/get", parts{"t", strings.Repeat("s", 64), "get", true}},
		{"$aws/things/t/shadow/name/" + strings.Repeat("s", 65) + "/get", parts{}},
		{"", parts{}},
	}
	for _, tc := range tests {
		t.Run(tc.topic, func(t *testing.T) {
			var got parts
			got.Thing, got.Name, got.Op, got.OK = ParseTopic(tc.topic)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseTopic (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrefix(t *testing.T) {
	if got, want := Prefix("dev1", ""), "$aws/things/dev1/shadow"; got != want {
		t.Errorf("Prefix classic = %s, want %s", got, want)
	}
	if got, want := Prefix("dev1", "cfg"), "$aws/things/dev1/shadow/name/cfg"; got != want {
		t.Errorf("Prefix named = %s, want %s", got, want)
	}
	// A named response topic has exactly 7 slashes.
	if n := strings.Count(Prefix("t", "s")+"/update/accepted", "/"); n != 7 {
		t.Errorf("named response topic has %d slashes, want 7", n)
	}
}

func TestHandleRequest(t *testing.T) {
	for _, name := range []string{"", "simShadow1"} {
		t.Run("shadow="+name, func(t *testing.T) {
			f := newFixture(t)
			p := Prefix("dev1", name)
			ts := f.clock.Unix()
			missing := "dev1"
			if name != "" {
				missing = name
			}
			steps := []struct {
				op, payload string
				want        []pubMsg
			}{
				{"get", `{"clientToken":"g1"}`, []pubMsg{
					{p + "/get/rejected", fmt.Sprintf(`{"code":404,"message":"No shadow exists with name: '%s'","timestamp":%d,"clientToken":"g1"}`, missing, ts)},
				}},
				{"update", `{"state":{"desired":{"led":"on"}},"clientToken":"u1"}`, []pubMsg{
					{p + "/update/accepted", fmt.Sprintf(`{"state":{"desired":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":%[1]d}}},"version":1,"timestamp":%[1]d,"clientToken":"u1"}`, ts)},
					{p + "/update/delta", fmt.Sprintf(`{"state":{"led":"on"},"metadata":{"led":{"timestamp":%[1]d}},"version":1,"timestamp":%[1]d,"clientToken":"u1"}`, ts)},
					{p + "/update/documents", fmt.Sprintf(`{"previous":null,"current":{"state":{"desired":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":%[1]d}}},"version":1},"timestamp":%[1]d,"clientToken":"u1"}`, ts)},
				}},
				{"update", `{"state":{"reported":{"led":"on"}}}`, []pubMsg{
					{p + "/update/accepted", fmt.Sprintf(`{"state":{"reported":{"led":"on"}},"metadata":{"reported":{"led":{"timestamp":%[1]d}}},"version":2,"timestamp":%[1]d}`, ts)},
					{p + "/update/documents", fmt.Sprintf(`{
						"previous":{"state":{"desired":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":%[1]d}}},"version":1},
						"current":{"state":{"desired":{"led":"on"},"reported":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":%[1]d}},"reported":{"led":{"timestamp":%[1]d}}},"version":2},
						"timestamp":%[1]d}`, ts)},
				}},
				{"update", `{"state":{"reported":{"led":"off"}},"version":1,"clientToken":"u3"}`, []pubMsg{
					{p + "/update/rejected", fmt.Sprintf(`{"code":409,"message":"Version conflict","timestamp":%d,"clientToken":"u3"}`, ts)},
				}},
				{"update", `garbage`, []pubMsg{
					{p + "/update/rejected", fmt.Sprintf(`{"code":400,"message":"Invalid JSON","timestamp":%d}`, ts)},
				}},
				{"get", ``, []pubMsg{
					{p + "/get/accepted", fmt.Sprintf(`{"state":{"desired":{"led":"on"},"reported":{"led":"on"}},"metadata":{"desired":{"led":{"timestamp":%[1]d}},"reported":{"led":{"timestamp":%[1]d}}},"version":2,"timestamp":%[1]d}`, ts)},
				}},
				{"delete", `{"clientToken":"d1"}`, []pubMsg{
					{p + "/delete/accepted", fmt.Sprintf(`{"version":2,"timestamp":%d,"clientToken":"d1"}`, ts)},
				}},
				{"delete", `{"clientToken":"d2"}`, []pubMsg{
					{p + "/delete/rejected", fmt.Sprintf(`{"code":404,"message":"No shadow exists with name: '%s'","timestamp":%d,"clientToken":"d2"}`, missing, ts)},
				}},
			}
			for i, st := range steps {
				if !f.svc.HandleRequest(p+"/"+st.op, []byte(st.payload)) {
					t.Fatalf("step %d: HandleRequest(%s) = false", i, st.op)
				}
				checkMsgs(t, f.rec.Take(), st.want)
			}
		})
	}
}

func TestHandleRequestIgnoresOtherTopics(t *testing.T) {
	f := newFixture(t)
	for _, topic := range []string{
		"sensors/dev1/telemetry",
		"$aws/things/dev1/shadow/update/accepted",
		"$aws/things/dev1/shadow/update/delta",
		"$aws/things/dev1/shadow/name/s/get/rejected",
		"$aws/things/dev1/jobs/get",
		"$aws/things/bad name/shadow/update",
	} {
		if f.svc.HandleRequest(topic, []byte(`{"state":{"reported":{"a":1}}}`)) {
			t.Errorf("HandleRequest(%s) = true", topic)
		}
	}
	if msgs := f.rec.Take(); len(msgs) != 0 {
		t.Errorf("published %v", msgs)
	}
	if _, err := f.svc.Get("dev1", "", nil); err == nil {
		t.Error("a response topic created a shadow")
	}
}

func TestUpdatePublishesDeltaNotAccepted(t *testing.T) {
	// The REST path: Update publishes delta and documents only.
	f := newFixture(t)
	if _, err := f.svc.Update("dev1", "cfg", []byte(`{"state":{"desired":{"a":1}}}`)); err != nil {
		t.Fatal(err)
	}
	var topics []string
	for _, m := range f.rec.Take() {
		topics = append(topics, m.Topic)
	}
	want := []string{"$aws/things/dev1/shadow/name/cfg/update/delta", "$aws/things/dev1/shadow/name/cfg/update/documents"}
	if diff := cmp.Diff(want, topics); diff != "" {
		t.Errorf("topics (-want +got):\n%s", diff)
	}
}
