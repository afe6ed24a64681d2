package provisioning

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// thingTemplate wraps a ThingName expression (and extra top-level sections)
// into a template with one thing.
func thingTemplate(nameExpr, extra string) string {
	if extra != "" {
		extra = "," + extra
	}
	return `{"Parameters":{"SerialNumber":{"Type":"String"},"Location":{"Type":"String","Default":"WA"},"CSV":{"Type":"String","Default":"a,b,c"}},
	 "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":` + nameExpr + `}}}` + extra + `}`
}

func TestIntrinsicFunctions(t *testing.T) {
	const maps = `"Mappings":{"Region":{"WA":{"Name":"seattle","Zones":["z1","z2"]},"OR":{"Name":"portland"}}}`
	const conds = `"Conditions":{"IsWA":{"Fn::Equals":[{"Ref":"Location"},"WA"]},
	   "NotWA":{"Fn::Not":[{"Condition":"IsWA"}]},
	   "Both":{"Fn::And":[{"Condition":"IsWA"},{"Fn::Equals":["x","x"]}]},
	   "Either":{"Fn::Or":[{"Condition":"NotWA"},{"Fn::Equals":[{"Ref":"SerialNumber"},"s1"]}]}}`
	for _, tc := range []struct {
		name, expr, extra string
		params            map[string]string
		want              string
	}{
		{"Ref", `{"Ref":"SerialNumber"}`, "", map[string]string{"SerialNumber": "s1"}, "s1"},
		{"Ref default", `{"Ref":"Location"}`, "", map[string]string{"SerialNumber": "s1"}, "WA"},
		{"Ref given beats default", `{"Ref":"Location"}`, "", map[string]string{"SerialNumber": "s1", "Location": "OR"}, "OR"},
		{"Ref certificate id", `{"Ref":"AWS::IoT::Certificate::Id"}`, "", map[string]string{"SerialNumber": "s", CertificateIDParameter: "abc"}, "abc"},
		{"Fn::Join", `{"Fn::Join":["-",["pi",{"Ref":"SerialNumber"},"x"]]}`, "", map[string]string{"SerialNumber": "s1"}, "pi-s1-x"},
		{"Fn::Join empty delimiter", `{"Fn::Join":["",["pi",{"Ref":"SerialNumber"}]]}`, "", map[string]string{"SerialNumber": "s1"}, "pis1"},
		{"Fn::Select literal", `{"Fn::Select":[1,["a","b","c"]]}`, "", map[string]string{"SerialNumber": "s"}, "b"},
		{"Fn::Select string index", `{"Fn::Select":["2",["a","b","c"]]}`, "", map[string]string{"SerialNumber": "s"}, "c"},
		{"Fn::Split + Select", `{"Fn::Select":[2,{"Fn::Split":[",",{"Ref":"CSV"}]}]}`, "", map[string]string{"SerialNumber": "s"}, "c"},
		{"Fn::Split + Join", `{"Fn::Join":[":",{"Fn::Split":["-",{"Ref":"SerialNumber"}]}]}`, "", map[string]string{"SerialNumber": "a-b"}, "a:b"},
		{"Fn::Sub", `{"Fn::Sub":"pi-${SerialNumber}-${Location}"}`, "", map[string]string{"SerialNumber": "s1"}, "pi-s1-WA"},
		{"Fn::Sub variables", `{"Fn::Sub":["${A}_${SerialNumber}",{"A":{"Fn::Join":["",["x","y"]]}}]}`, "", map[string]string{"SerialNumber": "s1"}, "xy_s1"},
		{"Fn::FindInMap", `{"Fn::FindInMap":["Region",{"Ref":"Location"},"Name"]}`, maps, map[string]string{"SerialNumber": "s"}, "seattle"},
		{"Fn::FindInMap list", `{"Fn::Select":[1,{"Fn::FindInMap":["Region","WA","Zones"]}]}`, maps, map[string]string{"SerialNumber": "s"}, "z2"},
		{"Fn::If true", `{"Fn::If":["IsWA","wa",{"Ref":"SerialNumber"}]}`, conds, map[string]string{"SerialNumber": "s"}, "wa"},
		{"Fn::If false", `{"Fn::If":["IsWA","wa",{"Ref":"SerialNumber"}]}`, conds, map[string]string{"SerialNumber": "s", "Location": "OR"}, "s"},
		{"Fn::Not", `{"Fn::If":["NotWA","yes","no"]}`, conds, map[string]string{"SerialNumber": "s", "Location": "OR"}, "yes"},
		{"Fn::And", `{"Fn::If":["Both","yes","no"]}`, conds, map[string]string{"SerialNumber": "s"}, "yes"},
		{"Fn::Or false", `{"Fn::If":["Either","yes","no"]}`, conds, map[string]string{"SerialNumber": "s"}, "no"},
		{"Fn::Or true", `{"Fn::If":["Either","yes","no"]}`, conds, map[string]string{"SerialNumber": "s1"}, "yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Evaluate(thingTemplate(tc.expr, tc.extra), tc.params)
			if err != nil {
				t.Fatalf("Evaluate: %v", err)
			}
			if res.Thing == nil || res.Thing.ThingName != tc.want {
				t.Errorf("ThingName = %+v, want %q", res.Thing, tc.want)
			}
		})
	}
}

func TestEvaluateResources(t *testing.T) {
	body := `{
	  "Parameters": {"SerialNumber": {"Type": "String"}, "AWS::IoT::Certificate::Id": {"Type": "String"}, "Env": {"Type": "String", "Default": "prod"}},
	  "Conditions": {"IsDev": {"Fn::Equals": [{"Ref": "Env"}, "dev"]}},
	  "Resources": {
	    "thing": {"Type": "AWS::IoT::Thing",
	      "Properties": {"ThingName": {"Fn::Join": ["", ["pi-", {"Ref": "SerialNumber"}]]},
	        "AttributePayload": {"serial": {"Ref": "SerialNumber"}, "debug": {"Fn::If": ["IsDev", "on", {"Ref": "AWS::NoValue"}]}},
	        "ThingGroups": ["field", {"Fn::Sub": "env-${Env}"}], "ThingTypeName": "pi4"},
	      "OverrideSettings": {"AttributePayload": "MERGE", "THING_GROUPS": "DO_NOTHING", "ThingTypeName": "REPLACE"}},
	    "certificate": {"Type": "AWS::IoT::Certificate",
	      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}},
	    "named": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device"}},
	    "inline": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyDocument": {"Version": "2012-10-17", "Statement": []}}},
	    "devOnly": {"Type": "AWS::IoT::Policy", "Condition": "IsDev", "Properties": {"PolicyName": "debug"}}
	  },
	  "DeviceConfiguration": {"FallbackUrl": "https://example.invalid", "Topic": {"Fn::Sub": "fleet/${SerialNumber}"}, "Port": 8883}
	}`
	got, err := Evaluate(body, map[string]string{"SerialNumber": "0042", CertificateIDParameter: "cid"})
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Thing: &ThingResource{
			LogicalName: "thing", ThingName: "pi-0042", AttributePayload: map[string]string{"serial": "0042"},
			ThingTypeName: "pi4", ThingGroups: []string{"field", "env-prod"},
			Overrides: map[string]string{"AttributePayload": "MERGE", "ThingGroups": "DO_NOTHING", "ThingTypeName": "REPLACE"},
		},
		Certificate: &CertificateResource{LogicalName: "certificate", CertificateID: "cid", Status: "ACTIVE"},
		Policies: []PolicyResource{
			{LogicalName: "inline", Name: "a0d3d4b8b8d0b2f8b5f3b9d1a3c1ad8e1e0f6f4e8c0d3c1b7b2d2b4b8b7a6e5f", Document: `{"Statement":[],"Version":"2012-10-17"}`},
			{LogicalName: "named", Name: "device"},
		},
		DeviceConfig: map[string]string{"FallbackUrl": "https://example.invalid", "Topic": "fleet/0042", "Port": "8883"},
	}
	// The inline policy's name is the document's SHA-256: check its shape only.
	if n := got.Policies[0].Name; len(n) != 64 {
		t.Errorf("inline policy name %q: want 64 hex characters", n)
	}
	got.Policies[0].Name = want.Policies[0].Name
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Evaluate (-want +got):\n%s", diff)
	}

	dev, err := Evaluate(body, map[string]string{"SerialNumber": "1", CertificateIDParameter: "cid", "Env": "dev"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dev.Policies) != 3 || dev.Thing.AttributePayload["debug"] != "on" {
		t.Errorf("with Env=dev: policies %+v, attributes %v", dev.Policies, dev.Thing.AttributePayload)
	}
}

func TestTemplateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		params     map[string]string
		want       error
	}{
		{"not json", `{`, nil, ErrInvalidTemplate},
		{"not an object", `[]`, nil, ErrInvalidTemplate},
		{"unknown section", `{"Outputs":{}}`, nil, ErrInvalidTemplate},
		{"parameter type", `{"Parameters":{"A":{"Type":"Number"}}}`, nil, ErrInvalidTemplate},
		{"parameter without type", `{"Parameters":{"A":{}}}`, nil, ErrInvalidTemplate},
		{"unknown resource type", `{"Resources":{"x":{"Type":"AWS::S3::Bucket"}}}`, nil, ErrInvalidTemplate},
		{"unknown property", `{"Resources":{"x":{"Type":"AWS::IoT::Thing","Properties":{"Color":"red"}}}}`, nil, ErrInvalidTemplate},
		{"two things", `{"Resources":{"a":{"Type":"AWS::IoT::Thing"},"b":{"Type":"AWS::IoT::Thing"}}}`, nil, ErrInvalidTemplate},
		{"unknown function", thingTemplate(`{"Fn::GetAtt":["a","b"]}`, ""), nil, ErrInvalidTemplate},
		{"join arity", thingTemplate(`{"Fn::Join":["-"]}`, ""), nil, ErrInvalidTemplate},
		{"unknown condition", thingTemplate(`{"Fn::If":["Nope","a","b"]}`, ""), nil, ErrInvalidTemplate},
		{"Fn::And outside conditions", thingTemplate(`{"Fn::And":[true,true]}`, ""), nil, ErrInvalidTemplate},
		{"bad override", `{"Resources":{"x":{"Type":"AWS::IoT::Thing","OverrideSettings":{"ThingTypeName":"MERGE"}}}}`, nil, ErrInvalidTemplate},
		{"unknown mapping", thingTemplate(`{"Fn::FindInMap":["M","a","b"]}`, ""), nil, ErrInvalidTemplate},
		{"too deep", thingTemplate(strings.Repeat(`{"Fn::Join":["",[`, 70)+`"x"`+strings.Repeat(`]]}`, 70), ""), nil, ErrInvalidTemplate},
		{"missing parameter", thingTemplate(`{"Ref":"SerialNumber"}`, ""), nil, ErrMissingParameter},
		{"ref to nothing", thingTemplate(`{"Ref":"Nope"}`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"select out of range", thingTemplate(`{"Fn::Select":[5,{"Fn::Split":[",",{"Ref":"CSV"}]}]}`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"select negative", thingTemplate(`{"Fn::Select":[-1,["a"]]}`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"bad thing name", thingTemplate(`{"Ref":"SerialNumber"}`, ""), map[string]string{"SerialNumber": "a b"}, ErrInvalidParameters},
		{"sub unknown", thingTemplate(`{"Fn::Sub":"${Nope}"}`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"sub unterminated", thingTemplate(`{"Fn::Sub":"${Nope"}`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"find in map miss", thingTemplate(`{"Fn::FindInMap":["M",{"Ref":"SerialNumber"},"b"]}`, `"Mappings":{"M":{"a":{"b":"c"}}}`), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"condition cycle", thingTemplate(`{"Fn::If":["A","x","y"]}`, `"Conditions":{"A":{"Condition":"B"},"B":{"Condition":"A"}}`), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"list as name", thingTemplate(`["a"]`, ""), map[string]string{"SerialNumber": "s"}, ErrInvalidParameters},
		{"bad status", `{"Resources":{"c":{"Type":"AWS::IoT::Certificate","Properties":{"CertificateId":"x","Status":"REVOKED"}}}}`, nil, ErrInvalidParameters},
		{"nested device configuration", `{"DeviceConfiguration":{"a":{"b":"c"}}}`, nil, ErrInvalidParameters},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate(tc.body, tc.params)
			if !errors.Is(err, tc.want) {
				t.Errorf("Evaluate: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDefaultTemplate(t *testing.T) {
	for _, withPolicy := range []bool{false, true} {
		res, err := Evaluate(DefaultTemplateBody(withPolicy), map[string]string{"SerialNumber": "10000000abcdef", CertificateIDParameter: "cid"})
		if err != nil {
			t.Fatal(err)
		}
		if res.Thing.ThingName != "10000000abcdef" || res.Certificate.CertificateID != "cid" || (len(res.Policies) == 1) != withPolicy {
			t.Errorf("default template (policy %v): %+v", withPolicy, res)
		}
		if _, err := Evaluate(DefaultTemplateBody(withPolicy), nil); !errors.Is(err, ErrMissingParameter) {
			t.Errorf("without SerialNumber: %v", err)
		}
	}
}

func FuzzEvaluate(f *testing.F) {
	f.Add(DefaultTemplateBody(true), "s1", "WA")
	f.Add(thingTemplate(`{"Fn::Select":[1,{"Fn::Split":[",",{"Ref":"CSV"}]}]}`, ""), "x", "a,b")
	f.Add(thingTemplate(`{"Fn::Sub":["${A}${!B}",{"A":{"Ref":"Location"}}]}`, ""), "s", "OR")
	f.Add(thingTemplate(`{"Fn::If":["C",{"Fn::FindInMap":["M",{"Ref":"Location"},"k"]},"n"]}`,
		`"Mappings":{"M":{"WA":{"k":"v"}}},"Conditions":{"C":{"Fn::Or":[{"Fn::Equals":[{"Ref":"Location"},"WA"]},{"Fn::Not":[{"Condition":"D"}]}]},"D":{"Fn::And":[true,false]}}`), "s", "WA")
	f.Fuzz(func(t *testing.T, body, serial, location string) {
		res, err := Evaluate(body, map[string]string{"SerialNumber": serial, "Location": location, "CSV": location})
		if err != nil {
			if !errors.Is(err, ErrInvalidTemplate) && !errors.Is(err, ErrInvalidParameters) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if res.Thing != nil && !thingNameRE.MatchString(res.Thing.ThingName) {
			t.Fatalf("invalid thing name %q accepted", res.Thing.ThingName)
		}
		if _, err := Parse(body); err != nil {
			t.Fatalf("Evaluate succeeded but Parse fails: %v", err)
		}
	})
}

func BenchmarkEvaluateDefault(b *testing.B) {
	body := DefaultTemplateBody(true)
	params := map[string]string{"SerialNumber": "10000000abcdef", CertificateIDParameter: "cid"}
	for b.Loop() {
		if _, err := Evaluate(body, params); err != nil {
			b.Fatal(err)
		}
	}
}
