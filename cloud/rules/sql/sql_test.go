package sql

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// eval runs src on payload (topic things/myThings/thingOne, client
// thing-1) and returns the result decoded, or "no match".
func eval(t *testing.T, src, payload string) any {
	t.Helper()
	st, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	r, err := st.Eval(&Message{
		Topic: "things/myThings/thingOne", Payload: []byte(payload),
		ClientID: "thing-1", Principal: "cafe", Time: time.UnixMilli(1481825251155),
		NewUUID: func() string { return "2dc3a7c1-1d9f-4b3a-9a0c-1e1a3b5d2f00" },
	})
	if err != nil {
		t.Fatalf("Eval(%q): %v", src, err)
	}
	if !r.Matched {
		return "no match"
	}
	var v any
	if err := json.Unmarshal(r.Payload, &v); err != nil {
		return "raw:" + string(r.Payload)
	}
	return v
}

// expr is the value of one SELECT item named v ("undefined" when it is
// left out of the result).
func expr(t *testing.T, x, payload string) any {
	t.Helper()
	out := eval(t, "SELECT "+x+" AS v FROM 'things/#'", payload)
	m, ok := out.(map[string]any)
	if !ok {
		t.Fatalf("%s: result %v is not an object", x, out)
	}
	v, ok := m["v"]
	if !ok {
		return "undefined"
	}
	return v
}

func TestSelect(t *testing.T) {
	const payload = `{"color":"red","temperature":50,"foo":{"bar":"RED","bar1":"GREEN","bar2":"BLUE"},"a":[1,2,{"b":3}],"n":null}`
	for _, tc := range []struct {
		sql  string
		want string
	}{
		{"SELECT * FROM 'things/#'", payload},
		{"SELECT color FROM 'things/#'", `{"color":"red"}`},
		{"SELECT color AS my_color FROM 'things/#'", `{"my_color":"red"}`},
		// AWS's "." operator example: SELECT foo.bar AS bar.baz
		{"SELECT foo.bar AS bar FROM 'topic/subtopic'", `{"bar":"RED"}`},
		{"SELECT foo.* FROM 'things/#'", `{"bar":"RED","bar1":"GREEN","bar2":"BLUE"}`},
		{"SELECT *, topic() AS t FROM 'things/#'", strings.TrimSuffix(payload, "}") + `,"t":"things/myThings/thingOne"}`},
		{"SELECT a[2].b AS b, a[0] AS first FROM 'things/#'", `{"b":3,"first":1}`},
		// Undefined is left out; null stays.
		{"SELECT missing, n FROM 'things/#'", `{"n":null}`},
		{"SELECT NULL AS n FROM 'topic/subtopic'", `{"n":null}`},
		{"SELECT temperature * 9 / 5 + 32 AS f FROM 'things/#'", `{"f":122}`},
		{"SELECT temperature - 0.5 AS t FROM 'things/#'", `{"t":49.5}`},
		{"SELECT 7 % 3 AS m, 7 / 2 AS d, 7.0 / 2 AS e FROM 'things/#'", `{"m":1,"d":3,"e":3.5}`},
		{"select Color from 'things/#'", `{}`}, // keys are case-sensitive, keywords are not
		{"SELECT 'a' + 'b' AS s, '2' + 3 AS n FROM 'things/#'", `{"s":"ab","n":5}`},
		{"SELECT {\"k\": color, \"u\": missing} AS o, [1, color] AS arr FROM 'things/#'", `{"o":{"k":"red"},"arr":[1,"red"]}`},
		{"SELECT upper(color) FROM 'things/#'", `{"upper":"RED"}`},
		{"SELECT temperature > 40 FROM 'things/#';", `{"_1":true}`},
	} {
		got := eval(t, tc.sql, payload)
		var want any
		if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.sql, d)
		}
	}
}

func TestSelectKeepsItemOrder(t *testing.T) {
	st, err := Parse("SELECT z, a, m FROM 't'")
	if err != nil {
		t.Fatal(err)
	}
	r, err := st.Eval(&Message{Topic: "t", Payload: []byte(`{"a":1,"m":2,"z":3}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Payload); got != `{"z":3,"a":1,"m":2}` {
		t.Errorf("got %s", got)
	}
}

func TestSelectStarNotJSON(t *testing.T) {
	st, err := Parse("SELECT * FROM 'bin/#'")
	if err != nil {
		t.Fatal(err)
	}
	raw := []byte{0, 1, 2, 0xff}
	r, err := st.Eval(&Message{Topic: "bin/x", Payload: raw})
	if err != nil || !r.Matched || string(r.Payload) != string(raw) {
		t.Fatalf("got %v %q %v, want the raw payload", r.Matched, r.Payload, err)
	}
	if got := eval(t, "SELECT encode(*, 'base64') AS data FROM 'bin/#'", "\x00\x01\x02\xff"); cmp.Diff(map[string]any{"data": "AAEC/w=="}, got) != "" {
		t.Errorf("encode(*): %v", got)
	}
}

func TestWhere(t *testing.T) {
	const payload = `{"color":"red","temperature":50,"armed":true,"n":null,"s":"TRUE"}`
	for _, tc := range []struct {
		where string
		match bool
	}{
		// The SQL reference's example: WHERE color = 'red'.
		{"color = 'red'", true},
		{"color = \"red\"", true},
		{"color <> 'red'", false},
		{"color != 'blue'", true},
		{"temperature > 40 AND color = 'red'", true},
		{"temperature > 60 OR color = 'red'", true},
		{"temperature > 60 OR color = 'blue'", false},
		{"NOT temperature > 60", true},
		{"NOT (temperature > 40 AND armed)", false},
		{"armed", true},
		{"s AND armed", true}, // "true" strings are Booleans to AND
		{"temperature >= 50 AND temperature <= 50", true},
		{"temperature < 50.5", true},
		{"temperature = 50.0", true},
		{"temperature = '50'", true},
		{"n IS NULL", true},
		{"n IS NOT NULL", false},
		{"missing IS NULL", false},
		{"missing IS NOT NULL", false},
		{"color IS NOT NULL", true},
		{"missing IS UNDEFINED", true},
		{"isUndefined(missing)", true},
		{"isUndefined(color) = false", true},
		{"isNull(n)", true},
		// Undefined operands: the comparison is Undefined, the rule does not fire.
		{"missing > 10", false},
		{"NOT (missing > 10)", false},
		{"missing = 'red'", false},
		{"missing <> 'red'", false},
		// false AND Undefined is false; true OR Undefined is true.
		{"NOT (temperature > 60 AND missing > 1)", true},
		{"temperature > 40 OR missing > 1", true},
		{"temperature", false}, // not a Boolean
		{"CASE color WHEN 'red' THEN true ELSE false END", true},
		{"CASE WHEN temperature > 45 THEN true END", true},
		{"topic(2) = 'myThings'", true},
		{"clientid() = 'thing-1'", true},
	} {
		got := eval(t, "SELECT color FROM 'things/#' WHERE "+tc.where, payload)
		if matched := got != "no match"; matched != tc.match {
			t.Errorf("WHERE %s: matched %v, want %v", tc.where, matched, tc.match)
		}
	}
}

func TestCase(t *testing.T) {
	const payload = `{"color":"yellow","n":3}`
	for _, tc := range []struct {
		x    string
		want any
	}{
		// The SQL reference's example of a simple CASE.
		{"CASE color WHEN 'green' THEN 'go' WHEN 'yellow' THEN 'caution' WHEN 'red' THEN 'stop' ELSE 'you are not at a stop light' END", "caution"},
		{"CASE color WHEN 'blue' THEN 1 END", "undefined"},
		{"CASE missing WHEN 'x' THEN 1 ELSE 2 END", float64(2)},
		{"CASE WHEN n > 5 THEN 'big' WHEN n > 1 THEN 'mid' ELSE 'small' END", "mid"},
	} {
		if d := cmp.Diff(tc.want, expr(t, tc.x, payload)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.x, d)
		}
	}
}

// TestFunctions holds iotsim to the examples of AWS's function reference.
func TestFunctions(t *testing.T) {
	const payload = `{"s":"Hello","arr":[1,2,3],"obj":{"a":"b"},"n":null,"data":"eyJhIjoxfQ=="}`
	for _, tc := range []struct {
		x    string
		want any
	}{
		{"abs(-5)", float64(5)},
		{"abs(-5.123)", 5.123},
		{"abs('-5.123')", 5.123},
		{"abs('x')", "undefined"},
		{"round(1.2)", float64(1)},
		{"round(1.5)", float64(2)},
		{"round(1.7)", float64(2)},
		{"round(-1.1)", float64(-1)},
		{"round(-1.5)", float64(-2)},
		{"ceil(1.2)", float64(2)},
		{"ceil(-1.2)", float64(-1)},
		{"floor(1.2)", float64(1)},
		{"floor(-1.2)", float64(-2)},
		{"upper('hello')", "HELLO"},
		{"upper(['hello'])", "undefined"},
		{"lower('HELLO')", "hello"},
		{"lower(['HELLO'])", "undefined"},
		{"concat(1)", float64(1)},
		{"concat([1, 2, 3], 4)", []any{float64(1), float64(2), float64(3), float64(4)}},
		{"concat([1, 2, 3], 'hello')", []any{float64(1), float64(2), float64(3), "hello"}},
		{"concat('con', 'cat')", "concat"},
		{"concat(1, 'hello')", "1hello"},
		{"concat('he', 'is', 'man')", "heisman"},
		{"concat([1, 2, 3], 'hello', [4, 5, 6])", []any{float64(1), float64(2), float64(3), "hello", float64(4), float64(5), float64(6)}},
		{"concat('a', missing)", "undefined"},
		{"substring('012345', 0)", "012345"},
		{"substring('012345', 2)", "2345"},
		{"substring('012345', 2.745)", "2345"},
		{"substring(123, 2)", "3"},
		{"substring('012345', -1)", "012345"},
		{"substring(true, 1.2)", "rue"},
		{"substring(false, -2.411E5)", "false"},
		{"substring('012345', 1, 3)", "12"},
		{"substring('012345', -50, 50)", "012345"},
		{"substring('012345', 3, 1)", ""},
		{"cast(true AS Int)", float64(1)},
		{"cast(false AS Decimal)", float64(0)},
		{"cast('1.9' AS Int)", float64(1)},
		{"cast(2.9 AS Int)", float64(2)},
		{"cast(1 AS String)", "1"},
		{"cast('TRUE' AS Boolean)", true},
		{"cast(0 AS Boolean)", false},
		{"cast('abc' AS Int)", "undefined"},
		{"cast(arr AS String)", "[1,2,3]"},
		{"isUndefined(missing)", true},
		{"isUndefined(n)", false},
		{"get(['a', 'b', 'c'], 1)", "b"},
		{"get(obj, 'a')", "b"},
		{"get(s, 1)", "e"},
		{"get(arr, 5)", "undefined"},
		{"encode('hello', 'base64')", "aGVsbG8="},
		{"decode(data, 'base64')", `{"a":1}`},
		{"decode(encode(s, 'base64'), 'base64')", "Hello"},
		{"decode('%%%', 'base64')", "undefined"},
		{"encode(s, 'hex')", "undefined"},
		{"topic()", "things/myThings/thingOne"},
		{"topic(1)", "things"},
		{"topic(2)", "myThings"},
		{"topic(3)", "thingOne"},
		{"topic(4)", "undefined"},
		{"clientid()", "thing-1"},
		{"principal()", "cafe"},
		{"timestamp()", float64(1481825251155)},
		{"newuuid()", "2dc3a7c1-1d9f-4b3a-9a0c-1e1a3b5d2f00"},
		{"parse_time('yyyy-MM-dd HH:mm:ss', 1481825251155)", "2016-12-15 18:07:31"},
		{"parse_time(\"yyyy.MM.dd G 'at' HH:mm:ss z\", timestamp())", "2016.12.15 AD at 18:07:31 UTC"},
		{"parse_time('yyyy-MM-dd HH:mm:ss.SSS Z', 1481825251155, 'America/Los_Angeles')", "2016-12-15 10:07:31.155 -0800"},
		{"parse_time('EEE, d MMM yyyy hh:mm a', 1481825251155)", "Thu, 15 Dec 2016 06:07 PM"},
		{"parse_time('yyyy', 'x')", "undefined"},
		{"parse_time('yyyy', 0, 'Not/AZone')", "undefined"},
		{"UPPER(s)", "HELLO"},
	} {
		if d := cmp.Diff(tc.want, expr(t, tc.x, payload)); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.x, d)
		}
	}
}

func TestClientIDNotMQTT(t *testing.T) {
	st, _ := Parse("SELECT clientid() AS c FROM '#'")
	r, err := st.Eval(&Message{Topic: "a", Payload: []byte("{}")})
	if err != nil || string(r.Payload) != `{"c":"n/a"}` {
		t.Errorf("got %s %v", r.Payload, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		"",
		"SELECT",
		"SELECT * FROM",
		"SELECT * 'a/b'",
		"SELECT * FROM 'a/b' WHERE",
		"SELECT * FROM 'a/b' WHERE a =",
		"SELECT * FROM 'a/#/b'",
		"SELECT * FROM 'a/b+'",
		"SELECT * FROM 'a/b' WHERE (a = 1",
		"SELECT nosuch(1) FROM 'a'",
		"SELECT concat() FROM 'a'",
		"SELECT cast(1 AS Float) FROM 'a'",
		"SELECT 'abc FROM 'a'",
		"SELECT a FROM 'b' extra",
		"SELECT CASE WHEN a THEN 1 FROM 'a'",
		"SELECT a AS FROM 'a'",
		"DELETE FROM 'a'",
		"SELECT # FROM 'a'",
		"SELECT " + strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300) + " FROM 'a'",
		"SELECT " + strings.Repeat("a", MaxStatementBytes) + " FROM 'a'",
	} {
		_, err := Parse(src)
		var pe *ParseError
		if !errors.Is(err, ErrParse) || !errors.As(err, &pe) {
			t.Errorf("Parse(%.60q): err %v, want a ParseError", src, err)
		}
	}
}

func TestParseFrom(t *testing.T) {
	for src, want := range map[string]string{
		"SELECT * FROM 'a/+/c'":                                  "a/+/c",
		"SELECT * FROM \"$aws/things/+/shadow/update/accepted\"": "$aws/things/+/shadow/update/accepted",
		"SELECT temp FROM topic/#":                               "topic/#",
		"SELECT * FROM 'a' WHERE x = 1":                          "a",
		"SELECT * FROM iot/rules WHERE x = 1;":                   "iot/rules",
	} {
		st, err := Parse(src)
		if err != nil {
			t.Errorf("Parse(%q): %v", src, err)
			continue
		}
		if st.Topic != want {
			t.Errorf("Parse(%q).Topic = %q, want %q", src, st.Topic, want)
		}
	}
}

func TestParseExpr(t *testing.T) {
	x, err := ParseExpr("topic(2)")
	if err != nil {
		t.Fatal(err)
	}
	m := &Message{Topic: "alarms/box-1", Payload: []byte(`{"n":1}`)}
	if got := x.String(m); got != "box-1" {
		t.Errorf("got %q", got)
	}
	x, _ = ParseExpr("missing")
	if got := x.String(m); got != "" {
		t.Errorf("Undefined substitutes as %q, want empty", got)
	}
	if _, err := ParseExpr("a b"); !errors.Is(err, ErrParse) {
		t.Errorf("ParseExpr(a b): %v", err)
	}
}

func FuzzParseEval(f *testing.F) {
	for _, s := range []string{
		"SELECT * FROM 'a/#' WHERE x > 1",
		"SELECT a.b[1] AS c, concat(a, 'x'), CASE a WHEN 1 THEN 2 ELSE 3 END FROM 'a' WHERE NOT a IS NULL",
		"SELECT cast(a AS Int), substring(s, 1, 2), parse_time('yyyy-MM-dd', timestamp()) FROM '#'",
		"SELECT {\"a\": [1, 2.5e3, -x]}, encode(*, 'base64'), a.* FROM 'x/+/y'",
	} {
		f.Add(s, []byte(`{"a":{"b":[1,2]},"x":3,"s":"hello"}`))
	}
	f.Fuzz(func(t *testing.T, src string, payload []byte) {
		st, err := Parse(src)
		if err != nil {
			if !errors.Is(err, ErrParse) {
				t.Fatalf("Parse error %v is not ErrParse", err)
			}
			return
		}
		r, err := st.Eval(&Message{Topic: "a/b/c", Payload: payload, Time: time.Unix(0, 0)})
		if err != nil {
			t.Fatalf("Eval(%q): %v", src, err)
		}
		if r.Matched && json.Valid(payload) && !json.Valid(r.Payload) {
			t.Fatalf("Eval(%q) gave invalid JSON %q", src, r.Payload)
		}
	})
}
