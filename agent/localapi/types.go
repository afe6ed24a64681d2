package localapi

import "time"

// Section and action names. The agent registers the sections it can fill;
// the CLI asks for them by these names.
const (
	SectionAgent      = "agent"
	SectionIdentity   = "identity"
	SectionConnection = "connection"
	SectionShadow     = "shadow"
	SectionSensors    = "sensors"
	SectionJobs       = "jobs"
	SectionOTA        = "ota"
	SectionDefender   = "defender"
	SectionOutbox     = "outbox"
	SectionLogs       = "logs"

	ActionReadSensors    = "sensors.read"
	ActionResyncShadow   = "shadow.resync"
	ActionDefenderReport = "defender.report"
	ActionLogLevel       = "log.level"
	ActionRotateCert     = "cert.rotate"
	ActionOTACommit      = "ota.commit"   // commit the version on trial now
	ActionOTARollback    = "ota.rollback" // body OTARollback; the agent restarts
	ActionOutboxList     = "outbox.list"  // body OutboxRequest; answer OutboxList
	ActionOutboxRetry    = "outbox.retry" // body OutboxRequest; answer OutboxChange
	ActionOutboxPurge    = "outbox.purge" // body OutboxRequest; answer OutboxChange
	ActionPartsPush      = "parts.push"   // body Push; answer Done
)

// OutboxRequest is the body of the outbox actions. IDs name messages;
// Quarantine selects the quarantine instead of the queue (retry always
// works on the quarantine). An empty IDs means every message, which purge
// accepts only with All.
type OutboxRequest struct {
	Quarantine bool     `json:"quarantine,omitempty"`
	IDs        []uint64 `json:"ids,omitempty"`
	All        bool     `json:"all,omitempty"`
	Limit      int      `json:"limit,omitempty"` // list: at most this many messages (0: 100)
}

// OutboxMessage is one queued or quarantined message.
type OutboxMessage struct {
	ID       uint64    `json:"id"`
	Topic    string    `json:"topic"`
	Class    string    `json:"class"` // telemetry or alarm
	Enqueued time.Time `json:"enqueued"`
	Bytes    int       `json:"bytes"`   // payload size
	Payload  string    `json:"payload"` // the payload, cut at 256 bytes (with "…")
	// Set for a quarantined message.
	Reason        string    `json:"reason,omitempty"`
	QuarantinedAt time.Time `json:"quarantined_at,omitzero"`
}

// OutboxList is the answer of outbox.list (and of the CLI offline).
type OutboxList struct {
	Quarantine bool            `json:"quarantine"` // which list Messages is
	Messages   []OutboxMessage `json:"messages"`
	More       int             `json:"more"` // messages not listed (over the limit)
	Stats      Outbox          `json:"stats"`
	Offline    bool            `json:"offline,omitempty"` // read from the state dir: the agent is not running
}

// OutboxChange is the answer of outbox.retry and outbox.purge.
type OutboxChange struct {
	IDs     []uint64 `json:"ids"` // the messages moved back to the queue, or deleted
	Message string   `json:"message"`
	Offline bool     `json:"offline,omitempty"`
}

// Push is the body of the parts.push action: readings of a part of type
// "push" ({"part":"tank","values":{"level_pct":40}}), or an input event of
// it ({"part":"bell","active":true}), or both. They go through the same
// limits, alarms, reporting and telemetry as the parts the agent reads.
type Push struct {
	Part   string             `json:"part"`
	Values map[string]float64 `json:"values,omitempty"`
	Active *bool              `json:"active,omitempty"`
}

// OTARollback is the body of the ota.rollback action.
type OTARollback struct {
	Reason string `json:"reason,omitempty"` // recorded in STATE/ota/state.json
}

// OTAChange is the answer of the ota.commit and ota.rollback actions.
type OTAChange struct {
	// Changed is false when there was nothing to do (already committed).
	Changed bool   `json:"changed"`
	Message string `json:"message"`
	// Active and ActiveVersion are the committed slot and its version now:
	// what the agent starts from from now on.
	Active        string `json:"active"`
	ActiveVersion string `json:"active_version,omitempty"`
	// Restarting is true when the agent stops now so that the supervisor
	// starts Active; false when a restart is still needed (Message says).
	Restarting bool `json:"restarting,omitempty"`
}

// Rotated is the answer of the cert.rotate action.
type Rotated struct {
	NewCertificateID string `json:"new_certificate_id"`
	NewCertificate   string `json:"new_certificate"`
	OldCertificateID string `json:"old_certificate_id"` // to deactivate: aws iot update-certificate --new-status INACTIVE
}

// Agent is the "agent" section: the daemon itself.
type Agent struct {
	Version   string    `json:"version"`
	Thing     string    `json:"thing"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	LogLevel  string    `json:"log_level"`            // in effect now
	LogConfig string    `json:"log_level_configured"` // from the config file or the shadow
	Healthy   bool      `json:"healthy"`
	Unhealthy string    `json:"unhealthy,omitempty"` // why not
	// Degraded lists why a healthy agent is at risk of losing data (the
	// disk refuses writes, ...).
	Degraded []string `json:"degraded,omitempty"`
	// Goroutines is how many goroutines the agent runs now: a number that
	// keeps growing while the agent does the same work is a leak (make
	// soak watches it).
	Goroutines int `json:"goroutines"`
}

// Identity is the "identity" section: who the device is to AWS.
type Identity struct {
	Thing     string    `json:"thing"`
	Cert      string    `json:"cert"`
	Subject   string    `json:"subject,omitempty"`
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	DaysLeft  int       `json:"days_left"`
	KeyStore  string    `json:"key_store"` // "file" or "tpm"
	Key       string    `json:"key"`       // file path, or TPM device and handle
	Error     string    `json:"error,omitempty"`
}

// Connection is the "connection" section: the MQTT link.
type Connection struct {
	Endpoint        string    `json:"endpoint"` // host:port
	ServerName      string    `json:"server_name"`
	ALPN            bool      `json:"alpn"`
	ClientID        string    `json:"client_id"`
	Connected       bool      `json:"connected"`
	ConnectedSince  time.Time `json:"connected_since,omitzero"`
	Connects        uint64    `json:"connects"`
	ConnectFailures uint64    `json:"connect_failures"`
	Disconnects     uint64    `json:"disconnects"`
	LastAttempt     time.Time `json:"last_attempt,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	Subscriptions   int       `json:"subscriptions"`
	Subscribed      int       `json:"subscribed"`
	Published       uint64    `json:"published"`
	Delivered       uint64    `json:"delivered"`
	PublishFailures uint64    `json:"publish_failures"`
	LastPublishAck  time.Time `json:"last_publish_ack,omitzero"`
	// NextAttempt is when the next connection attempt is due, while the
	// agent waits out a backoff.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Diagnosis is the likely cause of the broker closing the connection
	// (or refusing a subscription): an IoT policy that denies a topic.
	Diagnosis *ConnDiagnosis `json:"diagnosis,omitempty"`
}

// ConnDiagnosis names the packet the broker closed the connection after.
type ConnDiagnosis struct {
	Text     string    `json:"text"`
	Kind     string    `json:"kind"`  // publish or subscribe
	Topic    string    `json:"topic"` // topic or filter
	OutboxID uint64    `json:"outbox_id,omitempty"`
	InARow   int       `json:"in_a_row"`
	At       time.Time `json:"at"`
}

// Shadow is the "shadow" section. InSync is true when the cloud's document
// has no delta and every desired value was applied. Cloud is what a live
// get returned (absent offline); Reported is what the agent reports now.
type Shadow struct {
	Version     int64          `json:"version"`
	Synced      bool           `json:"synced"` // at least one full sync since start
	InSync      bool           `json:"in_sync"`
	Pending     []string       `json:"pending,omitempty"`  // delta keys, "alarm.armed"
	Problems    []string       `json:"problems,omitempty"` // desired values not applied
	Reported    map[string]any `json:"reported"`
	Desired     map[string]any `json:"desired,omitempty"`
	Delta       map[string]any `json:"delta,omitempty"`
	CloudError  string         `json:"cloud_error,omitempty"` // why there is no live document
	LastError   string         `json:"last_error,omitempty"`
	FetchedLive bool           `json:"fetched_live"`
}

// Sensors is the "sensors" section and the answer to sensors.read.
type Sensors struct {
	Env    *EnvReading  `json:"env,omitempty"`
	Inputs []InputState `json:"inputs,omitempty"`
	// Parts are every part's state but outputs', by name, in the shape
	// of the shadow's reported.sensors.
	Parts      map[string]map[string]any `json:"parts,omitempty"`
	Outputs    map[string]bool           `json:"outputs,omitempty"`
	Alarm      AlarmState                `json:"alarm"`
	ReadErrors uint64                    `json:"read_errors"`
	LastError  string                    `json:"last_error,omitempty"`
	Source     string                    `json:"source"` // "agent" (last values), "live" (read now), "direct" (hardware, no agent)
}

// EnvReading is one BME280 sample.
type EnvReading struct {
	Sensor       string    `json:"sensor"`
	Time         time.Time `json:"time,omitzero"`
	TemperatureC float64   `json:"temperature_c"`
	HumidityPct  float64   `json:"humidity_pct"`
	PressureKPa  float64   `json:"pressure_kpa"`
	MaxC         float64   `json:"max_c"`
	High         bool      `json:"high"`
	Error        string    `json:"error,omitempty"`
}

// InputState is a digital input's level.
type InputState struct {
	Name   string `json:"name"`
	Active bool   `json:"active"`
	Error  string `json:"error,omitempty"`
}

// AlarmState is the alarm as the agent holds it.
type AlarmState struct {
	Armed      bool   `json:"armed"`
	On         bool   `json:"on"`
	LastAlarm  int64  `json:"last_alarm,omitempty"` // unix seconds
	LastSensor string `json:"last_sensor,omitempty"`
	Events     uint64 `json:"events"`
}

// Outbox is the "outbox" section.
type Outbox struct {
	Depth            int    `json:"depth"`
	Bytes            int64  `json:"bytes"`
	MaxMessages      int    `json:"max_messages"`
	MaxBytes         int64  `json:"max_bytes"`
	Dropped          uint64 `json:"dropped"`
	DroppedTelemetry uint64 `json:"dropped_telemetry"`
	DroppedAlarm     uint64 `json:"dropped_alarm"`
	Corrupt          uint64 `json:"corrupt"`
	// Oldest is when the oldest queued message was queued.
	Oldest time.Time `json:"oldest,omitzero"`
	// Quarantined is how many messages wait in the quarantine (the broker
	// kept closing the connection after them); QuarantinedTotal counts
	// every one ever quarantined, Purged every message a person deleted.
	Quarantined      int    `json:"quarantined"`
	QuarantinedTotal uint64 `json:"quarantined_total"`
	Purged           uint64 `json:"purged"`
	Error            string `json:"error,omitempty"`
	// While the disk refuses writes: why, and the messages waiting in
	// memory (of at most MemoryMax). DroppedWarning counts the warnings
	// the memory queue dropped.
	DroppedWarning uint64 `json:"dropped_warning"`
	Degraded       string `json:"degraded,omitempty"`
	Memory         int    `json:"memory"`
	MemoryMax      int    `json:"memory_max"`
}

// Defender is the "defender" section.
type Defender struct {
	Enabled         bool      `json:"enabled"`
	Format          string    `json:"format,omitempty"`
	IntervalS       int       `json:"interval_s,omitempty"`
	Sent            uint64    `json:"sent"`
	Accepted        uint64    `json:"accepted"`
	Rejected        uint64    `json:"rejected"`
	PublishFailures uint64    `json:"publish_failures"`
	LastReportID    int64     `json:"last_report_id,omitempty"`
	LastAck         string    `json:"last_ack,omitempty"` // ACCEPTED or REJECTED
	LastAckAt       time.Time `json:"last_ack_at,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
}

// Logs is the "logs" section: the newest lines the agent logged.
type Logs struct {
	Lines []string `json:"lines"`
	Total uint64   `json:"total"` // lines logged since start
	Kept  int      `json:"kept"`  // the ring's size
}

// LogLevel is the body and answer of the log.level action.
type LogLevel struct {
	Level string `json:"level"`
}

// Done is the answer of an action that returns nothing else.
type Done struct {
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// Index is the answer of GET /v1.
type Index struct {
	Sections []string `json:"sections"`
	Actions  []string `json:"actions"`
}

// Jobs is the "jobs" section: the agent's AWS IoT Jobs runner.
type Jobs struct {
	Enabled  bool     `json:"enabled"`
	Handlers []string `json:"handlers,omitempty"` // the operations this agent runs
	Current  *JobRun  `json:"current,omitempty"`  // the job a handler runs now
	Last     *JobRun  `json:"last,omitempty"`     // the last job a handler finished in this run
	// InFlight is the job the runner has persisted as in flight
	// (STATE/jobs/inflight.json): it survives a restart, which resumes it.
	InFlight *JobInFlight `json:"in_flight,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// JobRun is one job a handler ran or runs.
type JobRun struct {
	ID        string    `json:"id"`
	Operation string    `json:"operation"`
	Resumed   bool      `json:"resumed,omitempty"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// Outcome is SUCCEEDED, FAILED, REJECTED, CANCELED, STOPPED (the agent
	// stopped first) or RESTARTING (the job finishes after a restart).
	Outcome string            `json:"outcome,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// JobInFlight is the runner's persisted in-flight record.
type JobInFlight struct {
	JobID           string `json:"job_id"`
	ExecutionNumber int64  `json:"execution_number"`
	Operation       string `json:"operation"`
	Marker          string `json:"marker,omitempty"`
	FinalStatus     string `json:"final_status,omitempty"` // decided, not yet acknowledged by the service
}

// OTA is the "ota" section: the A/B updater of the agent's binary.
type OTA struct {
	Enabled bool   `json:"enabled"`
	Version string `json:"version"`            // the version running now
	InTrial bool   `json:"in_trial,omitempty"` // this process is the new version on trial
	// The rest is STATE/ota/state.json; State is "" before the first update.
	State          string    `json:"state,omitempty"`
	JobID          string    `json:"job_id,omitempty"`
	ReleaseVersion string    `json:"release_version,omitempty"`
	Active         string    `json:"active,omitempty"`
	ActiveVersion  string    `json:"active_version,omitempty"`
	Slot           string    `json:"slot,omitempty"`
	FromVersion    string    `json:"from_version,omitempty"`
	Starts         int       `json:"starts,omitempty"`
	MaxStarts      int       `json:"max_starts,omitempty"`
	Reason         string    `json:"reason,omitempty"`
	TrialFailure   string    `json:"trial_failure,omitempty"`
	Failed         []string  `json:"failed,omitempty"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
	Error          string    `json:"error,omitempty"`
}

// SectionState is the "state" section: the recoveries of the agent's
// state files (STATE/recovered.json).
const SectionState = "state"

// State is the "state" section.
type State struct {
	Dir     string `json:"dir"`
	Journal string `json:"journal"`
	// Recovered is the journal, oldest first.
	Recovered []Recovery `json:"recovered,omitempty"`
	// MovedAside lists the moved-aside copies still in the state dir
	// (FILE.corrupt-TIMESTAMP): each is a recovery nobody has looked at.
	MovedAside []string `json:"moved_aside,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// Recovery is one state file that could not be read and was recovered.
type Recovery struct {
	File             string    `json:"file"`
	MovedTo          string    `json:"moved_to,omitempty"`
	At               time.Time `json:"at"`
	Reason           string    `json:"reason"`
	Action           string    `json:"action,omitempty"`
	Salvaged         int       `json:"salvaged,omitempty"`
	Lost             int       `json:"lost,omitempty"`
	LostUnknown      bool      `json:"lost_unknown,omitempty"`
	MovedCopyPresent bool      `json:"moved_copy_present,omitempty"`
}
