package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/iotagent/iotagent/cloud/rules/sql"
)

// Sentinels for the API to map to AWS's errors.
var (
	ErrNotFound = errors.New("rules: no such rule")
	ErrExists   = errors.New("rules: rule already exists")
	ErrInvalid  = errors.New("rules: invalid rule")
)

// SQL versions AWS accepts. iotsim evaluates every rule as 2016-03-23.
const (
	SQLVersion2016 = "2016-03-23"
	SQLVersion2015 = "2015-10-08"
	SQLVersionBeta = "beta"
)

// Payload is AWS's TopicRulePayload: what create-topic-rule and
// replace-topic-rule send.
type Payload struct {
	SQL              string  `json:"sql"`
	Description      string  `json:"description,omitempty"`
	Actions          Actions `json:"actions"`
	RuleDisabled     bool    `json:"ruleDisabled"`
	AWSIoTSQLVersion string  `json:"awsIotSqlVersion,omitempty"`
	ErrorAction      *Action `json:"errorAction,omitempty"`
}

// Actions is a rule's list of actions.
type Actions []Action

// Action is one of AWS's rule actions. iotsim runs republish, http and
// s3; a rule naming any other is refused at create time (Unsupported
// holds its names).
type Action struct {
	Republish *Republish `json:"republish,omitempty"`
	HTTP      *HTTP      `json:"http,omitempty"`
	S3        *S3        `json:"s3,omitempty"`
	// Unsupported are the other action types named, in order.
	Unsupported []string `json:"-"`
}

// UnmarshalJSON keeps the names of the action types iotsim does not run,
// so that Validate can name them.
func (a *Action) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	type plain Action
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*a = Action(p)
	for k := range m {
		switch k {
		case "republish", "http", "s3":
		default:
			a.Unsupported = append(a.Unsupported, k)
		}
	}
	slices.Sort(a.Unsupported)
	return nil
}

// Republish publishes the rule's result on a topic (a substitution
// template).
type Republish struct {
	RoleARN string          `json:"roleArn,omitempty"`
	Topic   string          `json:"topic"`
	QoS     *int            `json:"qos,omitempty"`
	Headers json.RawMessage `json:"headers,omitempty"`
}

// HTTP posts the rule's result to a URL (a substitution template) with
// headers whose values are templates too.
type HTTP struct {
	URL             string          `json:"url"`
	ConfirmationURL string          `json:"confirmationUrl,omitempty"`
	Headers         []Header        `json:"headers,omitempty"`
	Auth            json.RawMessage `json:"auth,omitempty"`
}

// Header is one HTTP header of an http action.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// S3 writes the rule's result as an object of iotsim's object store, at
// a key that is a substitution template.
type S3 struct {
	RoleARN    string `json:"roleArn,omitempty"`
	BucketName string `json:"bucketName"`
	Key        string `json:"key"`
	CannedACL  string `json:"cannedAcl,omitempty"`
}

// Rule is a stored topic rule.
type Rule struct {
	Name      string    `json:"ruleName"`
	ARN       string    `json:"ruleArn"`
	CreatedAt time.Time `json:"createdAt"`
	Payload
}

func (a *Action) kind() string {
	switch {
	case a.Republish != nil:
		return "republish"
	case a.HTTP != nil:
		return "http"
	case a.S3 != nil:
		return "s3"
	}
	return ""
}

// CheckName validates a rule name: 1-128 of [a-zA-Z0-9_].
func CheckName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("%w: the rule name must have 1 to 128 characters", ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return fmt.Errorf("%w: the rule name %q must match ^[a-zA-Z0-9_]+$", ErrInvalid, name)
		}
	}
	return nil
}

// compile checks a payload and prepares it to run. allowRemote lets http
// actions post to hosts that are not loopback.
func compile(name string, p Payload, allowRemote bool) (*compiled, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	switch p.AWSIoTSQLVersion {
	case "", SQLVersion2015, SQLVersion2016, SQLVersionBeta:
	default:
		return nil, fmt.Errorf("%w: awsIotSqlVersion %q: want %s, %s or %s", ErrInvalid, p.AWSIoTSQLVersion, SQLVersion2016, SQLVersion2015, SQLVersionBeta)
	}
	if strings.TrimSpace(p.SQL) == "" {
		return nil, fmt.Errorf("%w: the rule has no sql", ErrInvalid)
	}
	st, err := sql.Parse(p.SQL)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", name, err)
	}
	c := &compiled{name: name, stmt: st, filter: st.Topic}
	if len(p.Actions) > 10 {
		return nil, fmt.Errorf("%w: a rule has at most 10 actions, this one has %d", ErrInvalid, len(p.Actions))
	}
	for i := range p.Actions {
		ca, err := compileAction(&p.Actions[i], fmt.Sprintf("actions[%d]", i), allowRemote)
		if err != nil {
			return nil, err
		}
		c.actions = append(c.actions, ca)
	}
	if p.ErrorAction != nil {
		if c.errorAction, err = compileAction(p.ErrorAction, "errorAction", allowRemote); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func compileAction(a *Action, where string, allowRemote bool) (*action, error) {
	if len(a.Unsupported) > 0 {
		return nil, fmt.Errorf("%w: %s: iotsim runs the republish, http and s3 actions, not %s",
			ErrInvalid, where, strings.Join(a.Unsupported, ", "))
	}
	n := 0
	for _, set := range []bool{a.Republish != nil, a.HTTP != nil, a.S3 != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: %s must name exactly one action type, it names %d", ErrInvalid, where, n)
	}
	out := &action{kind: a.kind()}
	var err error
	switch {
	case a.Republish != nil:
		r := a.Republish
		if r.QoS != nil && (*r.QoS < 0 || *r.QoS > 1) {
			return nil, fmt.Errorf("%w: %s.republish.qos %d: want 0 or 1", ErrInvalid, where, *r.QoS)
		}
		if r.QoS != nil {
			out.qos = byte(*r.QoS)
		}
		if out.topic, err = parseTemplate(r.Topic, where+".republish.topic"); err != nil {
			return nil, err
		}
		out.resource = r.Topic
	case a.HTTP != nil:
		h := a.HTTP
		if out.url, err = parseTemplate(h.URL, where+".http.url"); err != nil {
			return nil, err
		}
		if !strings.Contains(h.URL, "${") {
			if err := checkURL(h.URL, allowRemote); err != nil {
				return nil, fmt.Errorf("%w: %s.http.url: %w", ErrInvalid, where, err)
			}
		}
		for i, hd := range h.Headers {
			if hd.Key == "" {
				return nil, fmt.Errorf("%w: %s.http.headers[%d] has no key", ErrInvalid, where, i)
			}
			t, err := parseTemplate(hd.Value, fmt.Sprintf("%s.http.headers[%d].value", where, i))
			if err != nil {
				return nil, err
			}
			out.headers = append(out.headers, headerTemplate{key: hd.Key, value: t})
		}
		out.resource = h.URL
	case a.S3 != nil:
		s := a.S3
		if s.BucketName == "" {
			return nil, fmt.Errorf("%w: %s.s3.bucketName is empty", ErrInvalid, where)
		}
		if out.key, err = parseTemplate(s.Key, where+".s3.key"); err != nil {
			return nil, err
		}
		out.bucket, out.resource = s.BucketName, s.BucketName
	}
	return out, nil
}

// ErrRemoteURL: an http action's URL is not on this machine.
var ErrRemoteURL = errors.New("the http action posts only to loopback addresses (127.0.0.0/8, ::1, localhost) unless iotsim serve has --rules-http-remote, so that a rule cannot send device data off this machine by surprise")

// checkURL accepts an http or https URL whose host is loopback, or any
// host when allowRemote is set.
func checkURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url %q: the scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", raw)
	}
	if allowRemote {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("url %q: %w", raw, ErrRemoteURL)
}
