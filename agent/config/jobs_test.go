package config

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testPublicKey is a minisign public key (any valid one will do).
const testPublicKey = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"

func TestJobsAndOTASections(t *testing.T) {
	defJobs := Jobs{Enabled: true, StepTimeoutMin: 10, DownloadMaxBytes: 64 << 20}
	defOTA := OTA{MaxStarts: 3, TrialTimeoutS: 120}
	tests := []struct {
		name      string
		section   string
		wantJobs  Jobs
		wantOTA   OTA
		wantPaths []string // Validate problems; nil: valid
		parseErr  bool
	}{
		{name: "absent: defaults", wantJobs: defJobs, wantOTA: defOTA},
		{name: "everything set",
			section: `,"jobs":{"enabled":true,"step_timeout_min":30,"download_dirs":["/var/lib/iotagent/files","files"],` +
				`"download_max_bytes":1048576,"download_hosts":["example.com","127.0.0.1:9000"],` +
				`"run_command":{"user":"iotjobs","allowed":["/usr/bin/systemctl"]}}` +
				`,"ota":{"enabled":true,"trusted_keys":["` + testPublicKey + `"],"allowed_hosts":["releases.example.com"],"max_starts":5,"trial_timeout_s":300}`,
			wantJobs: Jobs{Enabled: true, StepTimeoutMin: 30, DownloadDirs: []string{"/var/lib/iotagent/files", "/etc/iotagent/files"},
				DownloadMaxBytes: 1 << 20, DownloadHosts: []string{"example.com", "127.0.0.1:9000"},
				RunCommand: RunCommand{User: "iotjobs", Allowed: []string{"/usr/bin/systemctl"}}},
			wantOTA: OTA{Enabled: true, TrustedKeys: []string{testPublicKey}, AllowedHosts: []string{"releases.example.com"}, MaxStarts: 5, TrialTimeoutS: 300}},
		{name: "jobs off", section: `,"jobs":{"enabled":false}`,
			wantJobs: Jobs{StepTimeoutMin: 10, DownloadMaxBytes: 64 << 20}, wantOTA: defOTA},
		{name: "bad jobs",
			section: `,"jobs":{"step_timeout_min":0,"download_dirs":["/",""],"download_max_bytes":0,"download_hosts":["https://x.example","h:0"],` +
				`"run_command":{"allowed":["systemctl","/bin/true","/bin/true"]}}`,
			wantJobs: Jobs{Enabled: true, DownloadDirs: []string{"/", ""}, DownloadHosts: []string{"https://x.example", "h:0"},
				RunCommand: RunCommand{Allowed: []string{"systemctl", "/bin/true", "/bin/true"}}},
			wantOTA: defOTA,
			wantPaths: []string{"jobs.step_timeout_min", "jobs.download_dirs[0]", "jobs.download_dirs[1]", "jobs.download_max_bytes",
				"jobs.download_hosts[0]", "jobs.download_hosts[1]", "jobs.run_command.user",
				"jobs.run_command.allowed[0]", "jobs.run_command.allowed[2]"}},
		{name: "run_command as root", section: `,"jobs":{"run_command":{"user":"root","allowed":["/bin/true"]}}`,
			wantJobs:  Jobs{Enabled: true, StepTimeoutMin: 10, DownloadMaxBytes: 64 << 20, RunCommand: RunCommand{User: "root", Allowed: []string{"/bin/true"}}},
			wantOTA:   defOTA,
			wantPaths: []string{"jobs.run_command.user"}},
		{name: "ota enabled without keys", section: `,"ota":{"enabled":true}`,
			wantJobs: defJobs, wantOTA: OTA{Enabled: true, MaxStarts: 3, TrialTimeoutS: 120},
			wantPaths: []string{"ota.trusted_keys"}},
		{name: "bad ota", section: `,"ota":{"trusted_keys":["RWnotakey"],"allowed_hosts":["a/b"],"max_starts":0,"trial_timeout_s":5}`,
			wantJobs: defJobs, wantOTA: OTA{TrustedKeys: []string{"RWnotakey"}, AllowedHosts: []string{"a/b"}, TrialTimeoutS: 5},
			wantPaths: []string{"ota.trusted_keys[0]", "ota.allowed_hosts[0]", "ota.max_starts", "ota.trial_timeout_s"}},
		{name: "unknown key", section: `,"ota":{"keys":[]}`, parseErr: true},
		{name: "wrong type", section: `,"jobs":{"download_dirs":"/tmp"}`, parseErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig(t)
			data := `{"thing_name":"box-1","mqtt":{"endpoint":"127.0.0.1","root_ca":"` + c.MQTT.RootCA + `"}` + tt.section + `}`
			got, err := Parse([]byte(data), "/etc/iotagent")
			if tt.parseErr {
				if err == nil {
					t.Fatal("Parse accepted it")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantJobs, got.Jobs); diff != "" {
				t.Errorf("Jobs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantOTA, got.OTA); diff != "" {
				t.Errorf("OTA (-want +got):\n%s", diff)
			}
			c.Jobs, c.OTA = got.Jobs, got.OTA
			err = c.Validate()
			if diff := cmp.Diff(tt.wantPaths, paths(err)); diff != "" {
				t.Errorf("Validate paths (-want +got):\n%s\n%v", diff, err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("err %v is not ErrInvalid", err)
			}
		})
	}
}
