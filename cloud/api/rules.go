package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/iotagent/iotagent/cloud/rules"
	"github.com/iotagent/iotagent/cloud/rules/sql"
)

// Rules is the rules engine behind the topic rule operations;
// *rules.Engine satisfies it.
type Rules interface {
	Create(name string, p rules.Payload) (rules.Rule, error)
	Get(name string) (rules.Rule, error)
	List() []rules.Rule
	Replace(name string, p rules.Payload) error
	Delete(name string) error
	SetDisabled(name string, disabled bool) error
	Metrics() rules.EngineMetrics
}

func init() {
	mapRule := func(in *ruleIn, err error) error { return fromRules(err, in.Name) }
	mapPayload := func(in *rulePayloadIn, err error) error { return fromRules(err, in.Name) }
	routes = append(routes,
		op[rulePayloadIn]{"CreateTopicRule", svcControl, http.MethodPost, "/rules/{ruleName}", (*Server).createTopicRule, mapPayload}.route(),
		op[ruleIn]{"GetTopicRule", svcControl, http.MethodGet, "/rules/{ruleName}", (*Server).getTopicRule, mapRule}.route(),
		op[listRulesIn]{"ListTopicRules", svcControl, http.MethodGet, "/rules", (*Server).listTopicRules, nil}.route(),
		op[rulePayloadIn]{"ReplaceTopicRule", svcControl, http.MethodPatch, "/rules/{ruleName}", (*Server).replaceTopicRule, mapPayload}.route(),
		op[ruleIn]{"DeleteTopicRule", svcControl, http.MethodDelete, "/rules/{ruleName}", (*Server).deleteTopicRule, mapRule}.route(),
		op[ruleIn]{"EnableTopicRule", svcControl, http.MethodPost, "/rules/{ruleName}/enable", (*Server).enableTopicRule, mapRule}.route(),
		op[ruleIn]{"DisableTopicRule", svcControl, http.MethodPost, "/rules/{ruleName}/disable", (*Server).disableTopicRule, mapRule}.route(),
		// iotsim only: the rules engine's counters (queue drops, each
		// rule's evaluations, action failures).
		op[struct{}]{"IotsimRulesMetrics", svcControl, http.MethodGet, "/iotsim/rules/metrics", (*Server).rulesMetrics, nil}.route(),
	)
	checks["rule"] = func(_ string, v string) error { return checkRuleName(v) }
}

func checkRuleName(v string) error {
	if err := checkLen(v, "ruleName", 1, 128); err != nil {
		return err
	}
	if rules.CheckName(v) != nil {
		return validation(v, "ruleName", "Member must satisfy regular expression pattern: ^[a-zA-Z0-9_]+$")
	}
	return nil
}

// fromRules maps the rules engine's errors to AWS's: a SQL statement that
// does not parse is SqlParseException; a rule that does not exist is
// UnauthorizedException, as AWS answers for a rule ARN it does not know.
func fromRules(err error, name string) error {
	msg := func() string { return strings.TrimPrefix(err.Error(), rules.ErrInvalid.Error()+": ") }
	switch {
	case errors.Is(err, rules.ErrInvalid):
		return invalid("%s", msg())
	case errors.Is(err, sql.ErrParse):
		var pe *sql.ParseError
		if errors.As(err, &pe) {
			return errorf(http.StatusBadRequest, "SqlParseException", "%s", pe.Error())
		}
		return errorf(http.StatusBadRequest, "SqlParseException", "%s", err.Error())
	case errors.Is(err, rules.ErrExists):
		return errorf(http.StatusConflict, "ResourceAlreadyExistsException", "A rule named %s already exists", name)
	case errors.Is(err, rules.ErrNotFound):
		return errorf(http.StatusUnauthorized, "UnauthorizedException", "The rule %s does not exist", name)
	}
	return err
}

func (s *Server) rules() (Rules, error) {
	if s.o.Rules == nil {
		return nil, internal("The rules engine")
	}
	return s.o.Rules, nil
}

// ruleIn names one rule.
type ruleIn struct {
	Name string `uri:"ruleName" check:"rule"`
}

// rulePayloadIn is CreateTopicRule's and ReplaceTopicRule's request: the
// TopicRulePayload is the body.
type rulePayloadIn struct {
	Name string `uri:"ruleName" check:"rule"`
	rules.Payload
}

func (s *Server) createTopicRule(_ *call, in *rulePayloadIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	_, err = r.Create(in.Name, in.Payload)
	return nil, err
}

func (s *Server) replaceTopicRule(_ *call, in *rulePayloadIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	return nil, r.Replace(in.Name, in.Payload)
}

// topicRule is AWS's TopicRule, as GetTopicRule returns it.
type topicRule struct {
	Name             string        `json:"ruleName"`
	SQL              string        `json:"sql"`
	Description      string        `json:"description,omitempty"`
	CreatedAt        epoch         `json:"createdAt"`
	Actions          rules.Actions `json:"actions"`
	RuleDisabled     bool          `json:"ruleDisabled"`
	AWSIoTSQLVersion string        `json:"awsIotSqlVersion"`
	ErrorAction      *rules.Action `json:"errorAction,omitempty"`
}

func (s *Server) getTopicRule(_ *call, in *ruleIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	ru, err := r.Get(in.Name)
	if err != nil {
		return nil, err
	}
	return struct {
		ARN  string    `json:"ruleArn"`
		Rule topicRule `json:"rule"`
	}{ru.ARN, topicRule{ru.Name, ru.SQL, ru.Description, epoch(ru.CreatedAt), nonNilSlice(ru.Actions),
		ru.RuleDisabled, ru.AWSIoTSQLVersion, ru.ErrorAction}}, nil
}

type listRulesIn struct {
	Topic        string `query:"topic"`
	RuleDisabled *bool  `query:"ruleDisabled"`
}

func (s *Server) listTopicRules(c *call, in *listRulesIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	type item struct {
		ARN          string `json:"ruleArn"`
		Name         string `json:"ruleName"`
		TopicPattern string `json:"topicPattern"`
		CreatedAt    epoch  `json:"createdAt"`
		RuleDisabled bool   `json:"ruleDisabled"`
	}
	all := []item{}
	for _, ru := range r.List() {
		pattern := ""
		if st, err := sql.Parse(ru.SQL); err == nil {
			pattern = st.Topic
		}
		if in.Topic != "" && pattern != in.Topic || in.RuleDisabled != nil && *in.RuleDisabled != ru.RuleDisabled {
			continue
		}
		all = append(all, item{ru.ARN, ru.Name, pattern, epoch(ru.CreatedAt), ru.RuleDisabled})
	}
	start, end, next, err := page(len(all), c.query, "nextToken", "maxResults", 1000, 10000)
	if err != nil {
		return nil, err
	}
	return struct {
		Rules     []item `json:"rules"`
		NextToken string `json:"nextToken,omitempty"`
	}{all[start:end], next}, nil
}

func (s *Server) deleteTopicRule(_ *call, in *ruleIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	return nil, r.Delete(in.Name)
}

func (s *Server) enableTopicRule(_ *call, in *ruleIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	return nil, r.SetDisabled(in.Name, false)
}

func (s *Server) disableTopicRule(_ *call, in *ruleIn) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	return nil, r.SetDisabled(in.Name, true)
}

func (s *Server) rulesMetrics(_ *call, _ *struct{}) (any, error) {
	r, err := s.rules()
	if err != nil {
		return nil, err
	}
	return r.Metrics(), nil
}
