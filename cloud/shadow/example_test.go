package shadow_test

import (
	"encoding/json"
	"fmt"

	"github.com/iotagent/iotagent/cloud/shadow"
)

func ExampleMerge() {
	var stored, patch map[string]any
	_ = json.Unmarshal([]byte(`{"led":"off","cfg":{"rate":30,"mode":"eco"}}`), &stored)
	_ = json.Unmarshal([]byte(`{"led":"on","cfg":{"mode":null}}`), &patch)
	b, _ := json.Marshal(shadow.Merge(stored, patch))
	fmt.Println(string(b))
	// Output: {"cfg":{"rate":30},"led":"on"}
}

func ExampleDelta() {
	var desired, reported map[string]any
	_ = json.Unmarshal([]byte(`{"a":{"b":{"c":"d2"}},"n":1}`), &desired)
	_ = json.Unmarshal([]byte(`{"a":{"b":{"c":"d","e":"f"}},"n":1.0}`), &reported)
	b, _ := json.Marshal(shadow.Delta(desired, reported))
	fmt.Println(string(b))
	// Output: {"a":{"b":{"c":"d2"}}}
}
