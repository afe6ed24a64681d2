package agent

// JobsFilters are the Jobs topic filters the agent subscribes to (under
// $aws/things/THING/jobs/) when jobs.enabled: the IoT policy must allow
// iot:Subscribe on each. diag subscribes them one by one to find a policy
// that lacks them.
var JobsFilters = []string{"notify-next", "start-next/accepted", "start-next/rejected", "+/update/accepted", "+/update/rejected"}
