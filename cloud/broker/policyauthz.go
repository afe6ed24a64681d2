package broker

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/iotagent/iotagent/cloud/policy"
	"github.com/iotagent/iotagent/cloud/registry"
)

// PolicyAuthorizer is the Authorizer of AWS IoT policies: every CONNECT,
// PUBLISH, SUBSCRIBE and delivery is evaluated against the policies
// attached to the connection's certificate and to the thing groups of its
// thing (registry.EffectivePolicies), with the connection's policy
// variables. Parsed documents and each connection's policies and variables
// are cached; a policy attachment or group change invalidates at once the
// entries it can alter (those of its certificate or thing; all of them for
// a thing group's policies), and every CONNECT rebuilds its entry (so a
// thing's new attributes apply from the next connection).
//
// Use a pointer; the zero value with Registry set is ready.
type PolicyAuthorizer struct {
	Registry *registry.Registry

	once    sync.Once
	gen     atomic.Uint64
	docs    sync.Map // document text -> *policy.Document
	entries sync.Map // entryKey -> *authEntry
	count   atomic.Int64
	// known holds the certificate ids ("c"+id) and thing names ("t"+name)
	// of the entries built since the last clear, registered before their
	// policies are read: a change whose scope is not in it alters no entry.
	known sync.Map
	// certs caches each certificate's variables by its DER.
	certs     sync.Map // string(DER) -> policy.Vars
	certCount atomic.Int64
}

// maxEntries bounds the per-principal cache (a claim certificate connects
// with a new client id per device); past it the cache starts over.
const maxEntries = 4096

type entryKey struct{ cert, thing, client string }

// authEntry is what one principal's decisions need.
type authEntry struct {
	gen    uint64
	docs   []*policy.Document
	vars   policy.Vars
	prefix string // arn:aws:iot:<region>:<account>:
	err    error
}

var _ Authorizer = (*PolicyAuthorizer)(nil)

func (a *PolicyAuthorizer) init() {
	a.once.Do(func() { a.Registry.WatchPolicyChanges(a.changed) })
}

// changed drops the cached entries a policy change can alter. A change
// scoped to a certificate or thing for which no entry was built since the
// last clear alters none (a fleet provisioning RegisterThing attaches
// policies to a new certificate); otherwise the cache starts over.
func (a *PolicyAuthorizer) changed(c registry.PolicyChange) {
	if c.CertificateID != "" || c.Thing != "" {
		_, byCert := a.known.Load("c" + c.CertificateID)
		_, byThing := a.known.Load("t" + c.Thing)
		if !byCert && !byThing {
			return
		}
	}
	a.clear()
}

// Connect evaluates iot:Connect on client/<clientId>.
func (a *PolicyAuthorizer) Connect(p *Principal) error {
	e := a.entry(p, true)
	if e.err != nil {
		return fmt.Errorf("policies of certificate %.12s: %v: %w", p.CertificateID, e.err, ErrNotAuthorized)
	}
	if d := a.decide(e, "iot:Connect", "client/", p.ClientID); d != policy.Allow {
		return fmt.Errorf("iot:Connect on client/%s: %v: %w", p.ClientID, d, ErrNotAuthorized)
	}
	return nil
}

// Publish evaluates iot:Publish on topic/<topic>, and iot:RetainPublish
// too for a retained message.
func (a *PolicyAuthorizer) Publish(p *Principal, topic string, retain bool) bool {
	e := a.entry(p, false)
	if a.decide(e, "iot:Publish", "topic/", topic) != policy.Allow {
		return false
	}
	return !retain || a.decide(e, "iot:RetainPublish", "topic/", topic) == policy.Allow
}

// Subscribe evaluates iot:Subscribe on topicfilter/<filter> (the literal
// filter, wildcards included).
func (a *PolicyAuthorizer) Subscribe(p *Principal, filter string) bool {
	return a.decide(a.entry(p, false), "iot:Subscribe", "topicfilter/", filter) == policy.Allow
}

// Receive evaluates iot:Receive on topic/<topic>, for every delivery.
func (a *PolicyAuthorizer) Receive(p *Principal, topic string) bool {
	return a.decide(a.entry(p, false), "iot:Receive", "topic/", topic) == policy.Allow
}

// decide evaluates action on the resource ARN prefix + kind + name.
func (a *PolicyAuthorizer) decide(e *authEntry, action, kind, name string) policy.Decision {
	if e.err != nil {
		return policy.DefaultDeny
	}
	return policy.Evaluate(e.docs, policy.Request{Action: action, Resource: e.prefix + kind + name, Vars: e.vars})
}

// entry returns the principal's cached entry, rebuilding it if the policies
// changed since (or always, when fresh is set).
func (a *PolicyAuthorizer) entry(p *Principal, fresh bool) *authEntry {
	a.init()
	key := entryKey{p.CertificateID, p.ThingName, p.ClientID}
	gen := a.gen.Load()
	if !fresh {
		if v, ok := a.entries.Load(key); ok {
			if e := v.(*authEntry); e.gen == gen {
				return e
			}
		}
	}
	// Registered after gen is read and before the policies are: a change
	// that misses it is committed before they are read, and one that sees
	// it (and clears) leaves this entry with an old generation.
	a.known.Store("c"+p.CertificateID, struct{}{})
	if p.ThingName != "" {
		a.known.Store("t"+p.ThingName, struct{}{})
	}
	e := a.build(p, gen)
	if _, loaded := a.entries.Swap(key, e); !loaded && a.count.Add(1) > maxEntries {
		a.clear()
	}
	return e
}

// clear drops every cached entry. known is emptied before the generation
// moves on, so an entry built with the new generation has its scope in
// known; one built meanwhile with the old generation is rebuilt when next
// used.
func (a *PolicyAuthorizer) clear() {
	a.known.Clear()
	a.gen.Add(1)
	a.entries.Clear()
	a.count.Store(0)
}

func (a *PolicyAuthorizer) build(p *Principal, gen uint64) *authEntry {
	reg := a.Registry
	e := &authEntry{gen: gen, prefix: "arn:aws:iot:" + reg.Region() + ":" + reg.Account() + ":"}
	pols, err := reg.EffectivePolicies(p.CertificateID, p.ThingName)
	if err != nil {
		e.err = err
		return e
	}
	for _, pol := range pols {
		if v, ok := a.docs.Load(pol.Document); ok {
			e.docs = append(e.docs, v.(*policy.Document))
			continue
		}
		d, err := policy.Parse(pol.Document)
		if err != nil {
			continue // stored documents were validated; skip one that no longer parses
		}
		a.docs.Store(pol.Document, d)
		e.docs = append(e.docs, d)
	}
	e.vars = a.vars(p)
	return e
}

// vars builds the policy variables of a connection: client id, thing
// (when the client id names a thing attached to the certificate) and
// certificate attributes.
func (a *PolicyAuthorizer) vars(p *Principal) policy.Vars {
	v := policy.Vars{
		"iot:ClientId":                    {p.ClientID},
		"iot:Connection.Thing.IsAttached": {"false"},
	}
	if host, _, ok := cutPort(p.RemoteAddr); ok {
		v["aws:SourceIp"] = []string{host}
	}
	if p.ThingName != "" {
		v["iot:Connection.Thing.IsAttached"] = []string{"true"}
		v["iot:Connection.Thing.ThingName"] = []string{p.ThingName}
		if t, err := a.Registry.DescribeThing(p.ThingName); err == nil {
			if t.TypeName != "" {
				v["iot:Connection.Thing.ThingTypeName"] = []string{t.TypeName}
			}
			for k, val := range t.Attributes {
				v["iot:Connection.Thing.Attributes["+k+"]"] = []string{val}
			}
		}
	}
	if c := p.Certificate; c != nil {
		for k, val := range a.certVars(c) {
			v[k] = val
		}
	}
	return v
}

// certVars returns the iot:Certificate.* variables of c, computed once per
// certificate (a claim certificate connects once per device). The
// returned map and its slices are shared: read them only.
func (a *PolicyAuthorizer) certVars(c *x509.Certificate) policy.Vars {
	if v, ok := a.certs.Load(string(c.Raw)); ok {
		return v.(policy.Vars)
	}
	v := policy.Vars{}
	certVars(v, c)
	if _, loaded := a.certs.LoadOrStore(string(c.Raw), v); !loaded && a.certCount.Add(1) > maxEntries {
		a.certs.Clear()
		a.certCount.Store(0)
	}
	return v
}

func cutPort(addr string) (host, port string, ok bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			host, port = addr[:i], addr[i+1:]
			if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
				host = host[1 : len(host)-1]
			}
			return host, port, host != ""
		}
	}
	return "", "", false
}

// Distinguished-name attributes by OID, with AWS's variable names.
var dnAttrs = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{asn1.ObjectIdentifier{2, 5, 4, 3}, "CommonName"},
	{asn1.ObjectIdentifier{2, 5, 4, 10}, "Organization"},
	{asn1.ObjectIdentifier{2, 5, 4, 11}, "OrganizationalUnit"},
	{asn1.ObjectIdentifier{2, 5, 4, 6}, "Country"},
	{asn1.ObjectIdentifier{2, 5, 4, 8}, "State"},
	{asn1.ObjectIdentifier{2, 5, 4, 5}, "SerialNumber"},
	{asn1.ObjectIdentifier{2, 5, 4, 12}, "Title"},
	{asn1.ObjectIdentifier{2, 5, 4, 4}, "Surname"},
	{asn1.ObjectIdentifier{2, 5, 4, 42}, "GivenName"},
	{asn1.ObjectIdentifier{2, 5, 4, 43}, "Initials"},
	{asn1.ObjectIdentifier{2, 5, 4, 65}, "Pseudonym"},
	{asn1.ObjectIdentifier{2, 5, 4, 44}, "GenerationQualifier"},
	{asn1.ObjectIdentifier{2, 5, 4, 46}, "DistinguishedNameQualifier"},
}

// certVars adds the iot:Certificate.* variables of c to v.
func certVars(v policy.Vars, c *x509.Certificate) {
	var keys []string
	add := func(name string, vals ...string) {
		if len(vals) == 0 {
			return
		}
		key := "iot:Certificate." + name
		if _, seen := v[key]; !seen {
			keys = append(keys, key)
		}
		v[key] = append(v[key], vals...)
	}
	for _, part := range []struct {
		name  string
		names []pkixAttr
	}{
		{"Subject", attrs(c.Subject.Names)},
		{"Issuer", attrs(c.Issuer.Names)},
	} {
		for _, at := range part.names {
			for _, d := range dnAttrs {
				if at.oid.Equal(d.oid) {
					add(part.name+"."+d.name, at.value)
				}
			}
		}
	}
	add("Subject.AlternativeName.DNSName", c.DNSNames...)
	add("Subject.AlternativeName.RFC822Name", c.EmailAddresses...)
	for _, u := range c.URIs {
		add("Subject.AlternativeName.UniformResourceIdentifier", u.String())
	}
	for _, ip := range c.IPAddresses {
		add("Subject.AlternativeName.IPAddress", ip.String())
	}
	if c.SerialNumber != nil {
		add("SerialNumber", c.SerialNumber.String())
	}
	v["iot:Certificate.AvailableKeys"] = append(keys, "iot:Certificate.AvailableKeys")
}

type pkixAttr struct {
	oid   asn1.ObjectIdentifier
	value string
}

func attrs(names []pkix.AttributeTypeAndValue) []pkixAttr {
	out := make([]pkixAttr, 0, len(names))
	for _, n := range names {
		if s, ok := n.Value.(string); ok {
			out = append(out, pkixAttr{n.Type, s})
		}
	}
	return out
}
