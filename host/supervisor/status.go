package supervisor

import "time"

// State is where a plugin is in its life.
type State string

// Plugin states, as shown by GET /v1/plugins.
const (
	// StateStarting: the process is being launched, handshaken and
	// configured.
	StateStarting State = "starting"
	// StateServing: configured, limits applied, answering.
	StateServing State = "serving"
	// StateRestarting: it exited unexpectedly and waits for its backoff to
	// pass before the next start.
	StateRestarting State = "restarting"
	// StateQuarantined: it crashed too often within the window; it stays down
	// until its binary changes or an operator restarts it.
	StateQuarantined State = "quarantined"
	// StateRefused: it cannot be loaded as it is (incompatible SDK or
	// protocol, checksum mismatch, stray stdout, handshake timeout, crash
	// during start, settings rejected); it stays down until its binary or
	// its settings change or an operator restarts it.
	StateRefused State = "refused"
	// StateStopping: it is being shut down on purpose.
	StateStopping State = "stopping"
	// StateStopped: shut down on purpose.
	StateStopped State = "stopped"
	// StateDisabled: its subsystem is disabled in the config.
	StateDisabled State = "disabled"
	// StateMissing: its subsystem is enabled in the config but plugins.dir
	// has no dw-plugin-<name> for it.
	StateMissing State = "missing"
)

// Status is one plugin as the admin API shows it.
type Status struct {
	Name            string    `json:"name"`
	Path            string    `json:"path"`
	Version         string    `json:"version"`
	SDKVersion      string    `json:"sdk_version"`
	ProtocolVersion int       `json:"protocol_version"`
	State           State     `json:"state"`
	PID             int       `json:"pid"`
	Restarts        int       `json:"restarts"`
	LastError       string    `json:"last_error"`
	SHA256          string    `json:"sha256"`
	StartedAt       time.Time `json:"started_at,omitzero"`
	// Generation is the config generation whose limits the plugin has
	// acknowledged.
	Generation uint64 `json:"generation"`
	// Services are the plugin's domain gRPC services.
	Services []string `json:"services"`
}
