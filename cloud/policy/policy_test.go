package policy

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

const arn = "arn:aws:iot:us-east-1:123456789012:"

func mustParse(t testing.TB, text string) *Document {
	t.Helper()
	d, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, text)
	}
	return d
}

// devicePolicy is a typical device policy: its own client id, shadow and
// application topics.
const devicePolicy = `{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": [
      "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/*",
      "arn:aws:iot:us-east-1:123456789012:topic/telemetry/${iot:Connection.Thing.ThingName}",
      "arn:aws:iot:us-east-1:123456789012:topic/alarms/${iot:Connection.Thing.ThingName}"]},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/*"}
  ]
}`

func thingVars(thing string) Vars {
	return Vars{
		"iot:ClientId":                    {thing},
		"iot:Connection.Thing.ThingName":  {thing},
		"iot:Connection.Thing.IsAttached": {"true"},
	}
}

func TestEvaluate(t *testing.T) {
	box := thingVars("box-1")
	certVars := Vars{
		"iot:ClientId":                          {"c1"},
		"iot:Certificate.Subject.CommonName":    {"box-7"},
		"iot:Certificate.Subject.Organization":  {"Acme", "Widgets", "Gadgets"},
		"iot:Certificate.Subject.Country":       {"DE"},
		"iot:Connection.Thing.Attributes[room]": {"kitchen"},
		"iot:Connection.Thing.IsAttached":       {"false"},
		"aws:SourceIp":                          {"127.0.0.1"},
	}
	for _, tc := range []struct {
		name   string
		doc    string
		action string
		res    string
		vars   Vars
		want   Decision
	}{
		{"own connect", devicePolicy, "iot:Connect", arn + "client/box-1", box, Allow},
		{"other client id", devicePolicy, "iot:Connect", arn + "client/box-2", box, DefaultDeny},
		{"own shadow publish", devicePolicy, "iot:Publish", arn + "topic/$aws/things/box-1/shadow/update", box, Allow},
		{"other shadow publish", devicePolicy, "iot:Publish", arn + "topic/$aws/things/box-2/shadow/update", box, DefaultDeny},
		{"own shadow subscribe", devicePolicy, "iot:Subscribe", arn + "topicfilter/$aws/things/box-1/shadow/#", box, Allow},
		{"topic is not topicfilter", devicePolicy, "iot:Subscribe", arn + "topic/$aws/things/box-1/shadow/get", box, DefaultDeny},
		{"topicfilter is not topic", devicePolicy, "iot:Publish", arn + "topicfilter/$aws/things/box-1/shadow/get", box, DefaultDeny},
		{"receive", devicePolicy, "iot:Receive", arn + "topic/alarms/box-1", box, Allow},
		{"no thing: variable stays literal", devicePolicy, "iot:Connect", arn + "client/box-1", Vars{"iot:ClientId": {"box-1"}}, DefaultDeny},
		{"action case-insensitive", devicePolicy, "IOT:PUBLISH", arn + "topic/telemetry/box-1", box, Allow},
		{"resource case-sensitive", devicePolicy, "iot:Publish", arn + "topic/Telemetry/box-1", box, DefaultDeny},
		{"wrong region", devicePolicy, "iot:Publish", "arn:aws:iot:eu-west-1:123456789012:topic/telemetry/box-1", box, DefaultDeny},

		// Wildcards: * crosses levels, ? is one character, + and # are literal.
		{"star crosses slash", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/*"}}`,
			"iot:Publish", arn + "topic/a/b/c/d", nil, Allow},
		{"star needs the prefix", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/*"}}`,
			"iot:Publish", arn + "topic/a", nil, DefaultDeny},
		{"question is one char", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/???"}}`,
			"iot:Publish", arn + "topic/a/xyz", nil, Allow},
		{"question is not two", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/???"}}`,
			"iot:Publish", arn + "topic/a/xy", nil, DefaultDeny},
		{"question is a whole rune", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/?"}}`,
			"iot:Publish", arn + "topic/a/é", nil, Allow},
		{"plus is literal in policy", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/a/+"}}`,
			"iot:Subscribe", arn + "topicfilter/a/+", nil, Allow},
		{"plus does not match a level", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/a/+"}}`,
			"iot:Subscribe", arn + "topicfilter/a/b", nil, DefaultDeny},
		{"star allows hash filter", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:*:*:topicfilter/a/*"}}`,
			"iot:Subscribe", arn + "topicfilter/a/#", nil, Allow},
		{"escaped star is literal", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/${*}"}}`,
			"iot:Publish", arn + "topic/a/b", nil, DefaultDeny},
		{"escaped star matches star", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/a/${*}${?}${$}"}}`,
			"iot:Publish", arn + "topic/a/*?$", nil, Allow},
		{"action wildcard", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}`,
			"iot:RetainPublish", arn + "topic/x", nil, Allow},

		// Explicit deny wins, across statements and documents.
		{"deny wins", `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"iot:*","Resource":"*"},
			{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/secret/*"}]}`,
			"iot:Publish", arn + "topic/secret/x", nil, Deny},
		{"deny elsewhere", `{"Version":"2012-10-17","Statement":[
			{"Effect":"Allow","Action":"iot:*","Resource":"*"},
			{"Effect":"Deny","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/secret/*"}]}`,
			"iot:Publish", arn + "topic/open", nil, Allow},
		{"NotAction", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","NotAction":"iot:Connect","Resource":"*"}}`,
			"iot:Connect", arn + "client/x", nil, DefaultDeny},
		{"NotResource", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"},
			{"Effect":"Deny","Action":"iot:Publish","NotResource":"arn:aws:iot:*:*:topic/ok/*"}]}`,
			"iot:Publish", arn + "topic/no/x", nil, Deny},

		// Policy variables.
		{"common name", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Certificate.Subject.CommonName}/*"}}`,
			"iot:Publish", arn + "topic/box-7/t", certVars, Allow},
		{"multi-valued: first by default", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Certificate.Subject.Organization}"}}`,
			"iot:Publish", arn + "topic/Acme", certVars, Allow},
		{"multi-valued: .1 is the second", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/${iot:Certificate.Subject.Organization.1}"}}`,
			"iot:Publish", arn + "topic/Widgets", certVars, Allow},
		{"multi-valued: missing index stays literal", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/*${iot:Certificate.Subject.Organization.7}"}}`,
			"iot:Publish", arn + "topic/x", certVars, DefaultDeny},
		{"thing attribute", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/rooms/${iot:Connection.Thing.Attributes[room]}"}}`,
			"iot:Publish", arn + "topic/rooms/kitchen", certVars, Allow},
		{"missing attribute stays literal", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/rooms/${iot:Connection.Thing.Attributes[floor]}"}}`,
			"iot:Publish", arn + "topic/rooms/${iot:Connection.Thing.Attributes[floor]}", certVars, Allow},
		{"value with wildcard not substituted", devicePolicy, "iot:Publish", arn + "topic/telemetry/x",
			Vars{"iot:Connection.Thing.ThingName": {"*"}}, DefaultDeny},
		{"value with plus not substituted", devicePolicy, "iot:Publish", arn + "topic/telemetry/+",
			Vars{"iot:Connection.Thing.ThingName": {"+"}}, DefaultDeny},
		{"too long value not substituted", devicePolicy, "iot:Publish", arn + "topic/telemetry/" + strings.Repeat("x", 1025),
			Vars{"iot:Connection.Thing.ThingName": {strings.Repeat("x", 1025)}}, DefaultDeny},
		{"version 2008 does not substitute", `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:ClientId}"}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},

		// Conditions.
		{"Bool IsAttached true", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":["true"]}}}}`,
			"iot:Connect", arn + "client/box-1", box, Allow},
		{"Bool IsAttached false", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":true}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"StringEquals with variable", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":"${iot:Certificate.Subject.CommonName}"}}}}`,
			"iot:Connect", arn + "client/box-7", Vars{"iot:ClientId": {"box-7"}, "iot:Certificate.Subject.CommonName": {"box-7"}}, Allow},
		{"StringEquals with variable, other", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":"${iot:Certificate.Subject.CommonName}"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"StringEquals is not a glob", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":"c*"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"StringLike", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringLike":{"iot:ClientId":["x*","c?"]}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"StringNotEquals", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringNotEquals":{"iot:Certificate.Subject.Country":["DE","FR"]}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"StringNotEquals absent key", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringNotEquals":{"iot:Certificate.Subject.Title":"x"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"StringEquals absent key", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:Certificate.Subject.Title":"x"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"IfExists absent key", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEqualsIfExists":{"iot:Certificate.Subject.Title":"x"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"IgnoreCase", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEqualsIgnoreCase":{"iot:Certificate.Subject.Country":"de"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"ForAllValues on .List", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"ForAllValues:StringLike":{"iot:Certificate.Subject.Organization.List":["Acme","*gets"]}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"ForAllValues fails on one", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"ForAllValues:StringEquals":{"iot:Certificate.Subject.Organization.List":["Acme","Widgets"]}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"ForAnyValue on .List", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":"Gadgets"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"ForAnyValue absent", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"ForAnyValue:StringEquals":{"iot:ConnectAttributes":"LastWill"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"without .List a certificate key is its first value", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:Certificate.Subject.Organization":"Widgets"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"Null true", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Null":{"iot:Connection.Thing.ThingName":"true"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"Null false", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Null":{"iot:Connection.Thing.ThingName":"false"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"IpAddress", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"127.0.0.0/8"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, Allow},
		{"NotIpAddress", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"NotIpAddress":{"aws:SourceIp":["127.0.0.1"]}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
		{"Numeric", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"NumericLessThan":{"n":10}}}}`,
			"iot:Connect", arn + "client/c1", Vars{"n": {"9.5"}}, Allow},
		{"ArnLike", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"ArnLike":{"k":"arn:aws:iot:*:*:thing/*"}}}}`,
			"iot:Connect", arn + "client/c1", Vars{"k": {arn + "thing/t"}}, Allow},
		{"two operators are ANDed", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"StringEquals":{"iot:ClientId":"c1"},"Bool":{"iot:Connection.Thing.IsAttached":"true"}}}}`,
			"iot:Connect", arn + "client/c1", certVars, DefaultDeny},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := mustParse(t, tc.doc)
			got := Evaluate([]*Document{d}, Request{Action: tc.action, Resource: tc.res, Vars: tc.vars})
			if got != tc.want {
				t.Errorf("Evaluate(%s %s) = %v, want %v", tc.action, tc.res, got, tc.want)
			}
		})
	}
}

func TestEvaluateAcrossDocuments(t *testing.T) {
	allow := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*"}}`)
	deny := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"iot:Subscribe","Resource":"*"}}`)
	r := Request{Action: "iot:Subscribe", Resource: arn + "topicfilter/a"}
	for _, tc := range []struct {
		docs []*Document
		want Decision
	}{
		{nil, DefaultDeny},
		{[]*Document{allow}, Allow},
		{[]*Document{allow, deny}, Deny},
		{[]*Document{deny, allow}, Deny},
		{[]*Document{nil, allow}, Allow},
	} {
		if got := Evaluate(tc.docs, r); got != tc.want {
			t.Errorf("Evaluate(%d docs) = %v, want %v", len(tc.docs), got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	long := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"arn:` + strings.Repeat("x", 2000) + `"}}`
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"not json", `{`, "not a JSON object"},
		{"array", `[]`, "not a JSON object"},
		{"trailing", `{"Statement":[]} x`, "not a JSON object"},
		{"no statement", `{"Version":"2012-10-17"}`, "no Statement"},
		{"empty statement", `{"Version":"2012-10-17","Statement":[]}`, "Statement is empty"},
		{"bad version", `{"Version":"2020-01-01","Statement":[]}`, "Version"},
		{"unknown element", `{"Version":"2012-10-17","Foo":1,"Statement":[]}`, "unsupported element"},
		{"bad effect", `{"Version":"2012-10-17","Statement":{"Effect":"allow","Action":"iot:*","Resource":"*"}}`, "Effect"},
		{"no action", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}`, "Action"},
		{"both actions", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","NotAction":"iot:*","Resource":"*"}}`, "exactly one of Action"},
		{"no resource", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*"}}`, "Resource"},
		{"resource not arn", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"topic/a"}}`, "not an ARN"},
		{"bad action", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"publish","Resource":"*"}}`, "service:action"},
		{"empty action list", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}`, "non-empty array"},
		{"action number", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":5,"Resource":"*"}}`, "string or a non-empty array"},
		{"statement not object", `{"Version":"2012-10-17","Statement":["x"]}`, "JSON object"},
		{"unknown operator", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringSorta":{"k":"v"}}}}`, "unknown condition operator"},
		{"unknown set", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"ForSome:StringEquals":{"k":"v"}}}}`, "set operator"},
		{"bad bool", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"Bool":{"k":"yes"}}}}`, "true or false"},
		{"bad number", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"NumericEquals":{"k":"ten"}}}}`, "not a number"},
		{"bad cidr", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"IpAddress":{"k":"1.2.3"}}}}`, "IP address"},
		{"condition object value", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"*","Condition":{"StringEquals":{"k":{"a":1}}}}}`, "needs a string"},
		{"too long", long, "limit is 2048"},
		{"bad utf8", "{\"Statement\":\"\xff\"}", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.doc)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse: %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLengthIgnoresWhitespace(t *testing.T) {
	// 2048 characters of content padded with plenty of whitespace is fine.
	body := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:*","Resource":"arn:`
	tail := `"}}`
	pad := MaxDocumentChars - len(body) - len(tail)
	doc := body + strings.Repeat("x", pad) + tail
	doc = strings.ReplaceAll(doc, ",", " ,\n\t ")
	if _, err := Parse(doc); err != nil {
		t.Fatalf("document of exactly %d characters: %v", MaxDocumentChars, err)
	}
}

func TestVarsLookup(t *testing.T) {
	v := Vars{"iot:Certificate.Subject.OrganizationalUnit": {"a", "b", "c", "d", "e", "f", "g"}, "k": {"x", "y"}}
	for _, tc := range []struct {
		name string
		want []string
		ok   bool
	}{
		{"iot:Certificate.Subject.OrganizationalUnit", []string{"a"}, true},
		{"iot:Certificate.Subject.OrganizationalUnit.0", []string{"a"}, true},
		{"iot:Certificate.Subject.OrganizationalUnit.4", []string{"e"}, true},
		{"iot:Certificate.Subject.OrganizationalUnit.5", nil, false}, // cut to 5
		{"iot:Certificate.Subject.OrganizationalUnit.List", []string{"a", "b", "c", "d", "e"}, true},
		{"iot:Certificate.Subject.OrganizationalUnit.-1", nil, false},
		{"iot:Certificate.Subject.OrganizationalUnit.+1", nil, false},
		{"k", []string{"x", "y"}, true},
		{"missing", nil, false},
		{"missing.List", nil, false},
	} {
		got, ok := v.lookup(tc.name)
		if ok != tc.ok || !cmp.Equal(got, tc.want) {
			t.Errorf("lookup(%s) = %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// globRegexp is the reference semantics: the pattern as a regular
// expression over the whole string.
func globRegexp(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`(?s)^`)
	for _, r := range pat {
		switch r {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(`$`)
	return regexp.MustCompile(b.String())
}

func FuzzGlob(f *testing.F) {
	for _, s := range [][2]string{
		{"a/*", "a/b/c"}, {"*a*b?", "xxaxbz"}, {"???", "ab"}, {"a+#", "a+#"}, {"*", ""}, {"**?*", "é"}, {"a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaa"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, s string) {
		if !utf8.ValidString(pat) || !utf8.ValidString(s) || len(pat) > 64 || len(s) > 256 {
			return
		}
		if strings.Contains(pat, "${") {
			return
		}
		p := compilePattern(pat, true, false)
		got := p.match(s, nil, false)
		want := globRegexp(pat).MatchString(s)
		if got != want {
			t.Fatalf("glob %q on %q = %v, regexp says %v", pat, s, got, want)
		}
	})
}

func FuzzParseEvaluate(f *testing.F) {
	f.Add(devicePolicy, "iot:Publish", arn+"topic/$aws/things/box-1/shadow/update", "box-1")
	f.Add(`{"Version":"2012-10-17","Statement":{"Effect":"Deny","NotAction":"iot:C?nnect","NotResource":"arn:*","Condition":{"ForAllValues:StringLike":{"iot:ClientId.List":"${iot:ClientId}*"},"Null":{"x":"true"}}}}`,
		"iot:Connect", arn+"client/x", "x")
	f.Add(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericGreaterThanEquals":{"n":[1,2.5]},"IpAddressIfExists":{"aws:SourceIp":"::1"}}}}`, "iot:Receive", "arn:x", "1")
	f.Fuzz(func(t *testing.T, doc, action, resource, v string) {
		d, err := Parse(doc)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not ErrMalformed: %v", err)
			}
			return
		}
		vars := Vars{
			"iot:ClientId":                         {v},
			"iot:Connection.Thing.ThingName":       {v},
			"iot:Certificate.Subject.Organization": {v, v + "x"},
			"aws:SourceIp":                         {v},
			"n":                                    {v},
		}
		got := Evaluate([]*Document{d}, Request{Action: action, Resource: resource, Vars: vars})
		if got < DefaultDeny || got > Deny {
			t.Fatalf("decision %d", got)
		}
		// Adding a policy never turns a Deny into anything else.
		if got == Deny {
			all := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`)
			if Evaluate([]*Document{all, d}, Request{Action: action, Resource: resource, Vars: vars}) != Deny {
				t.Fatal("an Allow overrode an explicit Deny")
			}
		}
	})
}

func BenchmarkEvaluate(b *testing.B) {
	d := mustParse(b, devicePolicy)
	docs := []*Document{d}
	vars := thingVars("chocolate-box-1")
	reqs := []Request{
		{Action: "iot:Publish", Resource: arn + "topic/telemetry/chocolate-box-1", Vars: vars},
		{Action: "iot:Receive", Resource: arn + "topic/$aws/things/chocolate-box-1/shadow/update/delta", Vars: vars},
		{Action: "iot:Publish", Resource: arn + "topic/$aws/things/other/shadow/update", Vars: vars},
	}
	want := []Decision{Allow, Allow, DefaultDeny}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := i % len(reqs)
		if Evaluate(docs, reqs[k]) != want[k] {
			b.Fatal("wrong decision")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(devicePolicy); err != nil {
			b.Fatal(err)
		}
	}
}
