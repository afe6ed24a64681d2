package provisioning

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Template engine errors. Every error of Parse wraps ErrInvalidTemplate;
// Evaluate's errors that depend on the parameters wrap ErrInvalidParameters
// (and ErrMissingParameter for a parameter with no value and no default).
var (
	ErrInvalidTemplate   = errors.New("provisioning: invalid template")
	ErrInvalidParameters = errors.New("provisioning: invalid parameters")
	ErrMissingParameter  = fmt.Errorf("%w: missing parameter", ErrInvalidParameters)
)

// CertificateIDParameter is the parameter fleet provisioning supplies: the
// id of the certificate being registered.
const CertificateIDParameter = "AWS::IoT::Certificate::Id"

// noValue is the result of {"Ref": "AWS::NoValue"}: the property is left out.
const noValue = "AWS::NoValue"

// Resource types.
const (
	TypeThing       = "AWS::IoT::Thing"
	TypeCertificate = "AWS::IoT::Certificate"
	TypePolicy      = "AWS::IoT::Policy"
)

// Override settings.
const (
	OverrideDoNothing = "DO_NOTHING"
	OverrideReplace   = "REPLACE"
	OverrideFail      = "FAIL"
	OverrideMerge     = "MERGE"
)

// maxDepth bounds the nesting of intrinsic functions (and of JSON values
// inside them), so that hostile templates cannot exhaust the stack.
const maxDepth = 64

// maxResultLen bounds any string the engine builds (Fn::Join, Fn::Sub).
const maxResultLen = 64 << 10

var thingNameRE = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// Result is an evaluated template: the resources to create or update and
// the device configuration to return.
type Result struct {
	Thing        *ThingResource
	Certificate  *CertificateResource
	Policies     []PolicyResource // in logical-name order
	DeviceConfig map[string]string
}

// ThingResource is an AWS::IoT::Thing.
type ThingResource struct {
	LogicalName      string
	ThingName        string
	AttributePayload map[string]string // nil when the template has none
	ThingTypeName    string
	ThingGroups      []string
	BillingGroup     string
	// Overrides maps AttributePayload, ThingTypeName and ThingGroups to
	// DO_NOTHING, REPLACE, FAIL or MERGE (the last for AttributePayload and
	// ThingGroups only). A missing key means DO_NOTHING.
	Overrides map[string]string
}

// CertificateResource is an AWS::IoT::Certificate.
type CertificateResource struct {
	LogicalName   string
	CertificateID string
	// Other ways of naming a certificate (bulk registration); fleet
	// provisioning refuses them.
	CertificatePEM, CACertificatePEM, CSR string
	Status                                string // ACTIVE or INACTIVE (upper case); "" when not set
	Overrides                             map[string]string
}

// PolicyResource is an AWS::IoT::Policy: an existing policy by name, or an
// inline document (Name then defaults to the document's SHA-256).
type PolicyResource struct {
	LogicalName string
	Name        string
	Document    string // "" for a named existing policy
}

// Template is a parsed, structurally valid template.
type Template struct {
	params     map[string]parameter
	mappings   map[string]map[string]any
	conditions map[string]any
	resources  map[string]resource
	deviceConf map[string]any
}

type parameter struct {
	def    string
	hasDef bool
}

type resource struct {
	typ       string
	cond      string
	props     map[string]any
	overrides map[string]string
}

// Evaluate parses templateBody and evaluates it with params. It is pure: no
// I/O, no clock.
func Evaluate(templateBody string, params map[string]string) (Result, error) {
	t, err := Parse(templateBody)
	if err != nil {
		return Result{}, err
	}
	return t.Evaluate(params)
}

// Parse checks a template's structure: sections, parameter declarations,
// resource types, property names, override settings and the shape of every
// intrinsic function. What depends on parameter values is checked by
// Evaluate.
func Parse(templateBody string) (*Template, error) {
	dec := json.NewDecoder(strings.NewReader(templateBody))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", ErrInvalidTemplate, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalidTemplate)
	}
	if doc == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalidTemplate)
	}
	t := &Template{params: map[string]parameter{}, resources: map[string]resource{}}
	for k, v := range doc {
		var err error
		switch k {
		case "Parameters":
			err = t.parseParameters(v)
		case "Mappings":
			err = t.parseMappings(v)
		case "Conditions":
			m, ok := v.(map[string]any)
			if !ok {
				err = errors.New("section Conditions must be an object")
			}
			t.conditions = m
		case "Resources":
			err = t.parseResources(v)
		case "DeviceConfiguration":
			m, ok := v.(map[string]any)
			if !ok {
				err = errors.New("section DeviceConfiguration must be an object")
			}
			t.deviceConf = m
		case "AWSTemplateFormatVersion", "Version", "Description":
		default:
			err = fmt.Errorf("unknown section %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidTemplate, err)
		}
	}
	// Shape-check every expression once, so that a broken template fails at
	// creation, not on a device.
	for name, c := range t.conditions {
		if err := t.check(c, 0, true); err != nil {
			return nil, fmt.Errorf("%w: condition %s: %w", ErrInvalidTemplate, name, err)
		}
	}
	for name, r := range t.resources {
		if r.cond != "" {
			if _, ok := t.conditions[r.cond]; !ok {
				return nil, fmt.Errorf("%w: resource %s: unknown condition %q", ErrInvalidTemplate, name, r.cond)
			}
		}
		if err := t.check(r.props, 0, false); err != nil {
			return nil, fmt.Errorf("%w: resource %s: %w", ErrInvalidTemplate, name, err)
		}
	}
	for k, v := range t.deviceConf {
		if err := t.check(v, 0, false); err != nil {
			return nil, fmt.Errorf("%w: DeviceConfiguration %s: %w", ErrInvalidTemplate, k, err)
		}
	}
	return t, nil
}

func (t *Template) parseParameters(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("section Parameters must be an object")
	}
	for name, d := range m {
		decl, ok := d.(map[string]any)
		if !ok {
			return fmt.Errorf("parameter %s: must be an object", name)
		}
		var p parameter
		for k, v := range decl {
			switch k {
			case "Type":
				if v != "String" {
					return fmt.Errorf("parameter %s: Type %v: only String is supported", name, v)
				}
			case "Default":
				s, ok := v.(string)
				if !ok {
					return fmt.Errorf("parameter %s: Default must be a string", name)
				}
				p.def, p.hasDef = s, true
			case "Description", "AllowedValues", "AllowedPattern", "MinLength", "MaxLength":
			default:
				return fmt.Errorf("parameter %s: unknown key %q", name, k)
			}
		}
		if _, ok := decl["Type"]; !ok {
			return fmt.Errorf("parameter %s: Type is required", name)
		}
		t.params[name] = p
	}
	return nil
}

func (t *Template) parseMappings(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("section Mappings must be an object")
	}
	t.mappings = map[string]map[string]any{}
	for name, mv := range m {
		top, ok := mv.(map[string]any)
		if !ok {
			return fmt.Errorf("mapping %s: must be an object", name)
		}
		for k, sv := range top {
			second, ok := sv.(map[string]any)
			if !ok {
				return fmt.Errorf("mapping %s.%s: must be an object", name, k)
			}
			for k2, val := range second {
				if _, err := literal(val); err != nil {
					return fmt.Errorf("mapping %s.%s.%s: %w", name, k, k2, err)
				}
			}
		}
		t.mappings[name] = top
	}
	return nil
}

// literal checks a mapping value: a string, a number, a bool or a list of those.
func literal(v any) (any, error) {
	switch x := v.(type) {
	case string, json.Number, bool:
		return x, nil
	case []any:
		for _, e := range x {
			if _, ok := e.([]any); ok {
				return nil, errors.New("nested lists are not allowed")
			}
			if _, err := literal(e); err != nil {
				return nil, err
			}
		}
		return x, nil
	}
	return nil, fmt.Errorf("value must be a string or a list of strings")
}

var resourceProps = map[string][]string{
	TypeThing:       {"ThingName", "AttributePayload", "ThingTypeName", "ThingGroups", "BillingGroup"},
	TypeCertificate: {"CertificateId", "CertificatePem", "CACertificatePem", "CertificateSigningRequest", "Status"},
	TypePolicy:      {"PolicyName", "PolicyDocument"},
}

// overrideKeys maps every spelling of an override key to its property name.
var overrideKeys = map[string]map[string]string{
	TypeThing: {
		"AttributePayload": "AttributePayload", "ATTRIBUTE_PAYLOAD": "AttributePayload",
		"ThingTypeName": "ThingTypeName", "THING_TYPE_NAME": "ThingTypeName",
		"ThingGroups": "ThingGroups", "THING_GROUPS": "ThingGroups",
		"BillingGroup": "BillingGroup", "BILLING_GROUP": "BillingGroup",
	},
	TypeCertificate: {"Status": "Status", "STATUS": "Status"},
}

func (t *Template) parseResources(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return errors.New("section Resources must be an object")
	}
	things, certs := 0, 0
	for name, rv := range m {
		rm, ok := rv.(map[string]any)
		if !ok {
			return fmt.Errorf("resource %s: must be an object", name)
		}
		var r resource
		for k, v := range rm {
			switch k {
			case "Type":
				s, _ := v.(string)
				if _, ok := resourceProps[s]; !ok {
					return fmt.Errorf("resource %s: unsupported Type %v", name, v)
				}
				r.typ = s
			case "Properties":
				p, ok := v.(map[string]any)
				if !ok {
					return fmt.Errorf("resource %s: Properties must be an object", name)
				}
				r.props = p
			case "OverrideSettings":
				o, ok := v.(map[string]any)
				if !ok {
					return fmt.Errorf("resource %s: OverrideSettings must be an object", name)
				}
				r.overrides = map[string]string{}
				for ok, ov := range o {
					s, _ := ov.(string)
					r.overrides[ok] = s
				}
			case "Condition":
				s, ok := v.(string)
				if !ok || s == "" {
					return fmt.Errorf("resource %s: Condition must be a condition name", name)
				}
				r.cond = s
			default:
				return fmt.Errorf("resource %s: unknown key %q", name, k)
			}
		}
		if r.typ == "" {
			return fmt.Errorf("resource %s: Type is required", name)
		}
		for p := range r.props {
			if !slices.Contains(resourceProps[r.typ], p) {
				return fmt.Errorf("resource %s: %s has no property %q", name, r.typ, p)
			}
		}
		if len(r.overrides) > 0 {
			keys := overrideKeys[r.typ]
			if keys == nil {
				return fmt.Errorf("resource %s: %s takes no OverrideSettings", name, r.typ)
			}
			norm := map[string]string{}
			for k, val := range r.overrides {
				p, ok := keys[k]
				if !ok {
					return fmt.Errorf("resource %s: unknown override %q", name, k)
				}
				switch val {
				case OverrideDoNothing, OverrideReplace, OverrideFail:
				case OverrideMerge:
					if p != "AttributePayload" && p != "ThingGroups" {
						return fmt.Errorf("resource %s: MERGE is only for AttributePayload and ThingGroups", name)
					}
				default:
					return fmt.Errorf("resource %s: override %s: unknown setting %q", name, k, val)
				}
				norm[p] = val
			}
			r.overrides = norm
		}
		switch r.typ {
		case TypeThing:
			things++
		case TypeCertificate:
			certs++
		}
		t.resources[name] = r
	}
	if things > 1 || certs > 1 {
		return errors.New("at most one AWS::IoT::Thing and one AWS::IoT::Certificate are allowed")
	}
	return nil
}

// isFunction returns the function name when v is a one-key object whose key
// is Ref, Condition or Fn::*.
func isFunction(v any) (string, any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return "", nil, false
	}
	for k, arg := range m {
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, arg, true
		}
	}
	return "", nil, false
}

// check validates the shape of an expression tree. cond is set inside a
// condition, where Fn::Equals/And/Or/Not and {"Condition": name} are allowed.
func (t *Template) check(v any, depth int, cond bool) error {
	if depth > maxDepth {
		return errors.New("nested too deeply")
	}
	fn, arg, ok := isFunction(v)
	if !ok {
		switch x := v.(type) {
		case map[string]any:
			if cond {
				return errors.New("a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition")
			}
			for _, e := range x {
				if err := t.check(e, depth+1, false); err != nil {
					return err
				}
			}
		case []any:
			for _, e := range x {
				if err := t.check(e, depth+1, cond); err != nil {
					return err
				}
			}
		}
		return nil
	}
	args, _ := arg.([]any)
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("%s takes a list of %d arguments", fn, n)
		}
		return nil
	}
	switch fn {
	case "Ref":
		if _, ok := arg.(string); !ok {
			return errors.New("function Ref takes a name")
		}
		return nil
	case "Condition":
		s, ok := arg.(string)
		if !ok {
			return errors.New("function Condition takes a condition name")
		}
		if _, ok := t.conditions[s]; !ok {
			return fmt.Errorf("unknown condition %q", s)
		}
		return nil
	case "Fn::Join":
		if err := need(2); err != nil {
			return err
		}
	case "Fn::Select":
		if err := need(2); err != nil {
			return err
		}
	case "Fn::Split":
		if err := need(2); err != nil {
			return err
		}
	case "Fn::FindInMap":
		if err := need(3); err != nil {
			return err
		}
		if name, ok := args[0].(string); ok {
			if _, ok := t.mappings[name]; !ok {
				return fmt.Errorf("Fn::FindInMap: unknown mapping %q", name)
			}
		}
	case "Fn::Sub":
		switch a := arg.(type) {
		case string:
		case []any:
			if len(a) != 2 {
				return errors.New("Fn::Sub takes a string or [string, {variables}]")
			}
			if _, ok := a[0].(string); !ok {
				return errors.New("Fn::Sub: the first argument must be a string")
			}
			vars, ok := a[1].(map[string]any)
			if !ok {
				return errors.New("Fn::Sub: the second argument must be an object")
			}
			for _, e := range vars {
				if err := t.check(e, depth+1, false); err != nil {
					return err
				}
			}
			return nil
		default:
			return errors.New("Fn::Sub takes a string or [string, {variables}]")
		}
		return nil
	case "Fn::If":
		if err := need(3); err != nil {
			return err
		}
		name, ok := args[0].(string)
		if !ok {
			return errors.New("Fn::If: the first argument must be a condition name")
		}
		if _, ok := t.conditions[name]; !ok {
			return fmt.Errorf("Fn::If: unknown condition %q", name)
		}
		for _, e := range args[1:] {
			if err := t.check(e, depth+1, cond); err != nil {
				return err
			}
		}
		return nil
	case "Fn::Equals":
		if err := need(2); err != nil {
			return err
		}
		for _, e := range args {
			if err := t.check(e, depth+1, false); err != nil {
				return err
			}
		}
		return nil
	case "Fn::And", "Fn::Or":
		if len(args) < 2 || len(args) > 10 {
			return fmt.Errorf("%s takes 2 to 10 conditions", fn)
		}
	case "Fn::Not":
		if err := need(1); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported function %s", fn)
	}
	condArgs := fn == "Fn::And" || fn == "Fn::Or" || fn == "Fn::Not"
	if condArgs && !cond {
		return fmt.Errorf("%s is only allowed in Conditions", fn)
	}
	for _, e := range args {
		if err := t.check(e, depth+1, condArgs); err != nil {
			return err
		}
	}
	return nil
}

// evaluator holds one evaluation's state.
type evaluator struct {
	t     *Template
	vals  map[string]string
	conds map[string]bool
	busy  map[string]bool // conditions being evaluated, to catch cycles
}

// Parameters returns the names of the declared parameters, sorted.
func (t *Template) Parameters() []string {
	return slices.Sorted(maps.Keys(t.params))
}

// Evaluate evaluates the template with params. Declared parameters take
// their value from params, else their Default; one with neither is an
// error wrapping ErrMissingParameter. Undeclared params are ignored except
// the service-supplied AWS::IoT::* ones.
func (t *Template) Evaluate(params map[string]string) (Result, error) {
	e := &evaluator{t: t, vals: map[string]string{}, conds: map[string]bool{}, busy: map[string]bool{}}
	for k, v := range params {
		if strings.HasPrefix(k, "AWS::") {
			e.vals[k] = v
		}
	}
	for _, name := range t.Parameters() {
		p := t.params[name]
		if v, ok := params[name]; ok {
			e.vals[name] = v
		} else if p.hasDef {
			e.vals[name] = p.def
		} else {
			return Result{}, fmt.Errorf("%w: %s", ErrMissingParameter, name)
		}
	}
	var res Result
	for _, name := range slices.Sorted(maps.Keys(t.resources)) {
		r := t.resources[name]
		if r.cond != "" {
			ok, err := e.condition(r.cond, 0)
			if err != nil {
				return Result{}, fmt.Errorf("resource %s: %w", name, err)
			}
			if !ok {
				continue
			}
		}
		props := map[string]any{}
		for _, k := range slices.Sorted(maps.Keys(r.props)) {
			v, err := e.eval(r.props[k], 0)
			if err != nil {
				return Result{}, fmt.Errorf("resource %s: %s: %w", name, k, err)
			}
			if v != nil {
				props[k] = v
			}
		}
		if err := res.add(name, r, props); err != nil {
			return Result{}, err
		}
	}
	if t.deviceConf != nil {
		res.DeviceConfig = map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(t.deviceConf)) {
			v, err := e.eval(t.deviceConf[k], 0)
			if err != nil {
				return Result{}, fmt.Errorf("DeviceConfiguration %s: %w", k, err)
			}
			if v == nil {
				continue
			}
			s, err := scalar(v)
			if err != nil {
				return Result{}, fmt.Errorf("DeviceConfiguration %s: %w", k, err)
			}
			res.DeviceConfig[k] = s
		}
	}
	return res, nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidParameters}, args...)...)
}

// scalar turns an evaluated string, number or bool into a string.
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	}
	return "", invalidf("want a string, got %s", kind(v))
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return "a scalar"
}

func stringList(v any) ([]string, error) {
	l, ok := v.([]any)
	if !ok {
		return nil, invalidf("want a list of strings, got %s", kind(v))
	}
	out := make([]string, 0, len(l))
	for _, e := range l {
		s, err := scalar(e)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func (res *Result) add(name string, r resource, p map[string]any) error {
	str := func(k string) (string, error) {
		v, ok := p[k]
		if !ok {
			return "", nil
		}
		s, err := scalar(v)
		if err != nil {
			return "", fmt.Errorf("resource %s: %s: %w", name, k, err)
		}
		return s, nil
	}
	var err error
	switch r.typ {
	case TypeThing:
		th := &ThingResource{LogicalName: name, Overrides: r.overrides}
		if th.ThingName, err = str("ThingName"); err != nil {
			return err
		}
		if !thingNameRE.MatchString(th.ThingName) {
			return invalidf("resource %s: ThingName %q must match [a-zA-Z0-9:_-]{1,128}", name, truncate(th.ThingName, 140))
		}
		if th.ThingTypeName, err = str("ThingTypeName"); err != nil {
			return err
		}
		if th.BillingGroup, err = str("BillingGroup"); err != nil {
			return err
		}
		if v, ok := p["AttributePayload"]; ok {
			m, ok := v.(map[string]any)
			if !ok {
				return invalidf("resource %s: AttributePayload must be an object", name)
			}
			th.AttributePayload = map[string]string{}
			for k, av := range m {
				s, err := scalar(av)
				if err != nil {
					return fmt.Errorf("resource %s: AttributePayload.%s: %w", name, k, err)
				}
				th.AttributePayload[k] = s
			}
		}
		if v, ok := p["ThingGroups"]; ok {
			if th.ThingGroups, err = stringList(v); err != nil {
				return fmt.Errorf("resource %s: ThingGroups: %w", name, err)
			}
		}
		res.Thing = th
	case TypeCertificate:
		c := &CertificateResource{LogicalName: name, Overrides: r.overrides}
		for k, dst := range map[string]*string{
			"CertificateId": &c.CertificateID, "CertificatePem": &c.CertificatePEM,
			"CACertificatePem": &c.CACertificatePEM, "CertificateSigningRequest": &c.CSR, "Status": &c.Status,
		} {
			if *dst, err = str(k); err != nil {
				return err
			}
		}
		c.Status = strings.ToUpper(c.Status)
		if c.Status != "" && c.Status != "ACTIVE" && c.Status != "INACTIVE" {
			return invalidf("resource %s: Status %q must be ACTIVE or INACTIVE", name, truncate(c.Status, 64))
		}
		if c.CertificateID == "" && c.CertificatePEM == "" && c.CSR == "" {
			return invalidf("resource %s: one of CertificateId, CertificatePem or CertificateSigningRequest is required", name)
		}
		res.Certificate = c
	case TypePolicy:
		pol := PolicyResource{LogicalName: name}
		if pol.Name, err = str("PolicyName"); err != nil {
			return err
		}
		if v, ok := p["PolicyDocument"]; ok {
			switch d := v.(type) {
			case string:
				pol.Document = d
			case map[string]any:
				b, err := json.Marshal(d)
				if err != nil {
					return invalidf("resource %s: PolicyDocument: %v", name, err)
				}
				pol.Document = string(b)
			default:
				return invalidf("resource %s: PolicyDocument must be a JSON string or object", name)
			}
			if !json.Valid([]byte(pol.Document)) {
				return invalidf("resource %s: PolicyDocument is not valid JSON", name)
			}
			if pol.Name == "" {
				sum := sha256.Sum256([]byte(pol.Document))
				pol.Name = hex.EncodeToString(sum[:])
			}
		}
		if pol.Name == "" {
			return invalidf("resource %s: PolicyName or PolicyDocument is required", name)
		}
		res.Policies = append(res.Policies, pol)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// eval evaluates an expression. nil means AWS::NoValue (leave it out).
func (e *evaluator) eval(v any, depth int) (any, error) {
	if depth > maxDepth {
		return nil, invalidf("nested too deeply")
	}
	fn, arg, ok := isFunction(v)
	if !ok {
		switch x := v.(type) {
		case map[string]any:
			out := make(map[string]any, len(x))
			for _, k := range slices.Sorted(maps.Keys(x)) {
				r, err := e.eval(x[k], depth+1)
				if err != nil {
					return nil, err
				}
				if r != nil {
					out[k] = r
				}
			}
			return out, nil
		case []any:
			out := make([]any, 0, len(x))
			for _, el := range x {
				r, err := e.eval(el, depth+1)
				if err != nil {
					return nil, err
				}
				if r != nil {
					out = append(out, r)
				}
			}
			return out, nil
		case nil:
			return nil, invalidf("null is not a value")
		}
		return v, nil
	}
	args, _ := arg.([]any)
	switch fn {
	case "Ref":
		name, _ := arg.(string)
		if name == noValue {
			return nil, nil
		}
		val, ok := e.vals[name]
		if !ok {
			return nil, invalidf("Ref to %q: no such parameter", truncate(name, 128))
		}
		return val, nil
	case "Fn::Join":
		delim, err := e.evalString(args[0], depth)
		if err != nil {
			return nil, fmt.Errorf("Fn::Join delimiter: %w", err)
		}
		lv, err := e.eval(args[1], depth+1)
		if err != nil {
			return nil, err
		}
		parts, err := stringList(lv)
		if err != nil {
			return nil, fmt.Errorf("Fn::Join: %w", err)
		}
		return bounded(strings.Join(parts, delim))
	case "Fn::Select":
		iv, err := e.eval(args[0], depth+1)
		if err != nil {
			return nil, err
		}
		is, err := scalar(iv)
		if err != nil {
			return nil, fmt.Errorf("Fn::Select index: %w", err)
		}
		i, err := strconv.Atoi(is)
		if err != nil || i < 0 {
			return nil, invalidf("Fn::Select index %q is not a non-negative integer", truncate(is, 32))
		}
		lv, err := e.eval(args[1], depth+1)
		if err != nil {
			return nil, err
		}
		l, ok := lv.([]any)
		if !ok {
			return nil, invalidf("Fn::Select: want a list, got %s", kind(lv))
		}
		if i >= len(l) {
			return nil, invalidf("Fn::Select index %d out of range (list of %d)", i, len(l))
		}
		return l[i], nil
	case "Fn::Split":
		delim, err := e.evalString(args[0], depth)
		if err != nil {
			return nil, fmt.Errorf("Fn::Split delimiter: %w", err)
		}
		if delim == "" {
			return nil, invalidf("Fn::Split delimiter is empty")
		}
		s, err := e.evalString(args[1], depth)
		if err != nil {
			return nil, fmt.Errorf("Fn::Split: %w", err)
		}
		parts := strings.Split(s, delim)
		out := make([]any, len(parts))
		for i, p := range parts {
			out[i] = p
		}
		return out, nil
	case "Fn::FindInMap":
		var keys [3]string
		for i := range keys {
			s, err := e.evalString(args[i], depth)
			if err != nil {
				return nil, fmt.Errorf("Fn::FindInMap: %w", err)
			}
			keys[i] = s
		}
		top, ok := e.t.mappings[keys[0]]
		if !ok {
			return nil, invalidf("Fn::FindInMap: no mapping %q", truncate(keys[0], 128))
		}
		second, ok := top[keys[1]].(map[string]any)
		if !ok {
			return nil, invalidf("Fn::FindInMap: mapping %s has no key %q", keys[0], truncate(keys[1], 128))
		}
		val, ok := second[keys[2]]
		if !ok {
			return nil, invalidf("Fn::FindInMap: mapping %s.%s has no key %q", keys[0], keys[1], truncate(keys[2], 128))
		}
		return val, nil
	case "Fn::Sub":
		return e.sub(arg, depth)
	case "Fn::If":
		name := args[0].(string) // checked by Parse
		ok, err := e.condition(name, depth+1)
		if err != nil {
			return nil, err
		}
		if ok {
			return e.eval(args[1], depth+1)
		}
		return e.eval(args[2], depth+1)
	case "Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Condition":
		b, err := e.boolean(v, depth)
		if err != nil {
			return nil, err
		}
		return strconv.FormatBool(b), nil
	}
	return nil, invalidf("unsupported function %s", fn)
}

func bounded(s string) (any, error) {
	if len(s) > maxResultLen {
		return nil, invalidf("a value is longer than %d bytes", maxResultLen)
	}
	return s, nil
}

func (e *evaluator) evalString(v any, depth int) (string, error) {
	r, err := e.eval(v, depth+1)
	if err != nil {
		return "", err
	}
	return scalar(r)
}

// sub expands ${Name} (parameters or the variable map) and ${!Literal}.
func (e *evaluator) sub(arg any, depth int) (any, error) {
	var s string
	vars := map[string]string{}
	switch a := arg.(type) {
	case string:
		s = a
	case []any:
		s = a[0].(string) // checked by Parse
		for _, k := range slices.Sorted(maps.Keys(a[1].(map[string]any))) {
			v, err := e.evalString(a[1].(map[string]any)[k], depth)
			if err != nil {
				return nil, fmt.Errorf("Fn::Sub variable %s: %w", k, err)
			}
			vars[k] = v
		}
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, invalidf("Fn::Sub: unterminated ${ in %q", truncate(s, 64))
		}
		name := s[i+2 : i+j]
		s = s[i+j+1:]
		if lit, ok := strings.CutPrefix(name, "!"); ok {
			b.WriteString("${" + lit + "}")
			continue
		}
		name = strings.TrimSpace(name)
		if v, ok := vars[name]; ok {
			b.WriteString(v)
		} else if v, ok := e.vals[name]; ok {
			b.WriteString(v)
		} else {
			return nil, invalidf("Fn::Sub: no parameter %q", truncate(name, 128))
		}
		if b.Len() > maxResultLen {
			return nil, invalidf("a value is longer than %d bytes", maxResultLen)
		}
	}
	return bounded(b.String())
}

// condition evaluates a named condition once per evaluation.
func (e *evaluator) condition(name string, depth int) (bool, error) {
	if v, ok := e.conds[name]; ok {
		return v, nil
	}
	c, ok := e.t.conditions[name]
	if !ok {
		return false, invalidf("unknown condition %q", truncate(name, 128))
	}
	if e.busy[name] {
		return false, invalidf("condition %s refers to itself", name)
	}
	e.busy[name] = true
	v, err := e.boolean(c, depth+1)
	delete(e.busy, name)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	e.conds[name] = v
	return v, nil
}

// boolean evaluates a condition expression.
func (e *evaluator) boolean(v any, depth int) (bool, error) {
	if depth > maxDepth {
		return false, invalidf("nested too deeply")
	}
	fn, arg, ok := isFunction(v)
	if !ok {
		if b, ok := v.(bool); ok {
			return b, nil
		}
		if s, ok := v.(string); ok && (s == "true" || s == "false") {
			return s == "true", nil
		}
		return false, invalidf("a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition")
	}
	args, _ := arg.([]any)
	switch fn {
	case "Condition":
		name, _ := arg.(string)
		return e.condition(name, depth+1)
	case "Fn::Equals":
		a, err := e.eval(args[0], depth+1)
		if err != nil {
			return false, err
		}
		b, err := e.eval(args[1], depth+1)
		if err != nil {
			return false, err
		}
		ab, err1 := json.Marshal(a)
		bb, err2 := json.Marshal(b)
		if err := errors.Join(err1, err2); err != nil {
			return false, invalidf("Fn::Equals: %v", err)
		}
		if sa, err := scalar(a); err == nil {
			if sb, err := scalar(b); err == nil {
				return sa == sb, nil
			}
		}
		return bytes.Equal(ab, bb), nil
	case "Fn::Not":
		b, err := e.boolean(args[0], depth+1)
		return !b, err
	case "Fn::And", "Fn::Or":
		and := fn == "Fn::And"
		for _, a := range args {
			b, err := e.boolean(a, depth+1)
			if err != nil {
				return false, err
			}
			if b != and {
				return b, nil
			}
		}
		return and, nil
	case "Fn::If":
		name := args[0].(string)
		ok, err := e.condition(name, depth+1)
		if err != nil {
			return false, err
		}
		if ok {
			return e.boolean(args[1], depth+1)
		}
		return e.boolean(args[2], depth+1)
	}
	return false, invalidf("%s is not a condition", fn)
}
